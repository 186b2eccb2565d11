#!/usr/bin/env bash
# Describe log directories.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.LogDirsCommand "$@"
