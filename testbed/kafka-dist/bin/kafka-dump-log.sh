#!/usr/bin/env bash
# Dump log segments.
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.DumpLogSegments "$@"
