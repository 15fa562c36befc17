"""BMS REST client: transport, API adapters, point map, normalised samples, backfill."""
