#!/usr/bin/env bash
# kafka-server-start.sh [-daemon] server.properties [--override property=value]*
set -e
if [ $# -lt 1 ]; then
    echo "USAGE: $0 [-daemon] server.properties [--override property=value]*" >&2
    exit 1
fi
base_dir="$(cd "$(dirname "$0")/.." && pwd)"
export KAFKA_LOG4J_OPTS="${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$base_dir/config/log4j2.properties}"
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}"
EXTRA_ARGS=("-name" "kafkaServer")
if [ "$1" = "-daemon" ]; then
    EXTRA_ARGS=("-daemon" "${EXTRA_ARGS[@]}")
    shift
fi
exec "$base_dir/bin/kafka-run-class.sh" "${EXTRA_ARGS[@]}" kafka.Kafka "$@"
