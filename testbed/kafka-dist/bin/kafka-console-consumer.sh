#!/usr/bin/env bash
# Read records from a topic to stdout.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.consumer.ConsoleConsumer "$@"
