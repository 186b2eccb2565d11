#!/usr/bin/env bash
# Describe and upgrade feature levels.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.FeatureCommand "$@"
