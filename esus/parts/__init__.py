"""The service's parts, one module each: each wires one domain package to the device, the store and the clock."""
