#!/usr/bin/env bash
# Footprint's launcher for Kafka classes: kafka-run-class.sh [-daemon] [-name NAME] CLASS [ARGS...]
# Honours JAVA_HOME, KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_GC_LOG_OPTS, KAFKA_JMX_OPTS,
# KAFKA_LOG4J_OPTS, KAFKA_OPTS, LOG_DIR, CLASSPATH (prepended to libs/*).
set -e
if [ $# -lt 1 ]; then
    echo "USAGE: $0 [-daemon] [-name servicename] classname [opts]" >&2
    exit 1
fi
base_dir="$(cd "$(dirname "$0")/.." && pwd)"

DAEMON_MODE=false
DAEMON_NAME=kafka
while [ $# -gt 0 ]; do
    case "$1" in
        -daemon) DAEMON_MODE=true; shift ;;
        -name) DAEMON_NAME="$2"; shift 2 ;;
        *) break ;;
    esac
done

if [ -n "$JAVA_HOME" ]; then JAVA="$JAVA_HOME/bin/java"; else JAVA=java; fi
LOG_DIR="${LOG_DIR:-$base_dir/logs}"
mkdir -p "$LOG_DIR" 2>/dev/null || true

CP="$base_dir/libs/*"
if [ -n "$CLASSPATH" ]; then CP="$CLASSPATH:$CP"; fi

KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx256M}"
KAFKA_JVM_PERFORMANCE_OPTS="${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}"
KAFKA_LOG4J_OPTS="${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$base_dir/config/tools-log4j2.properties}"

# Word splitting of the *_OPTS variables is intended (they hold several options).
# shellcheck disable=SC2086
set -- "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $KAFKA_GC_LOG_OPTS $KAFKA_JMX_OPTS \
    "-Dkafka.logs.dir=$LOG_DIR" $KAFKA_LOG4J_OPTS -cp "$CP" $KAFKA_OPTS "$@"

if [ "$DAEMON_MODE" = true ]; then
    nohup "$@" >"$LOG_DIR/$DAEMON_NAME.out" 2>&1 </dev/null &
    echo $! >"$LOG_DIR/$DAEMON_NAME.pid"
else
    exec "$@"
fi
