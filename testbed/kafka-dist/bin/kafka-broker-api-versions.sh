#!/usr/bin/env bash
# Print the API versions a broker supports.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
