#!/usr/bin/env bash
# Format and inspect KRaft log directories (kafka.tools.StorageTool).
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
