"""What survives a restart and what leaves the device: the history store, the InfluxDB outbox and its writer."""
