#!/usr/bin/env bash
# Print the cluster id, unregister brokers.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.ClusterTool "$@"
