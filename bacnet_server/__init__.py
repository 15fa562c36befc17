"""The BACnet/IP device: object table, commandable points, COV, and the app that serves them."""
