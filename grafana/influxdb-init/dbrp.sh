#!/bin/sh
# Run once by the influxdb image after its setup: map the InfluxQL database (and retention policy
# "autogen") to esus's bucket, so Grafana's InfluxQL queries reach it. InfluxDB 2.2+ makes a
# virtual mapping of the same name by itself; this one is explicit and survives a bucket rename.
set -eu
bucket_id=$(influx bucket list --name "${DOCKER_INFLUXDB_INIT_BUCKET}" --hide-headers | cut -f1)
influx v1 dbrp create --bucket-id "${bucket_id}" --db "${DOCKER_INFLUXDB_INIT_BUCKET}" --rp autogen --default
