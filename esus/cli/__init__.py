"""The `esus` command line and `esus doctor`."""
