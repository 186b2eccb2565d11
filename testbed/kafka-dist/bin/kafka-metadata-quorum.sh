#!/usr/bin/env bash
# Describe the KRaft metadata quorum.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.MetadataQuorumCommand "$@"
