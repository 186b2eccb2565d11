#!/usr/bin/env bash
# Print topic partition offsets.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.GetOffsetShell "$@"
