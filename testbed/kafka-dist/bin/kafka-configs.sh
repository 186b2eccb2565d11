#!/usr/bin/env bash
# Describe and alter broker/topic configurations.
exec "$(dirname "$0")/kafka-run-class.sh" kafka.admin.ConfigCommand "$@"
