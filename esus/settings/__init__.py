"""Settings: the environment and `.env`, the site file, and the one-line errors they end in."""
