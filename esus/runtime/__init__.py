"""The machinery every part runs on: the clock, the scheduler, the supervisor, systemd."""
