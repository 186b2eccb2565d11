#!/usr/bin/env bash
# kafka-server-stop.sh [CONFIG_PATH]
# Sends SIGTERM to the Kafka broker(s) started from this distribution; with CONFIG_PATH, only to
# the broker started with that properties file. Waits up to KAFKA_STOP_TIMEOUT seconds (default 60).
set -u
base_dir="$(cd "$(dirname "$0")/.." && pwd)"
config="${1:-}"
timeout="${KAFKA_STOP_TIMEOUT:-60}"
pids=()
for d in /proc/[0-9]*; do
    cmd="$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)" || continue
    case "$cmd" in *" kafka.Kafka "*|*" kafka.Kafka") ;; *) continue ;; esac
    case "$cmd" in *"$base_dir/libs/"*) ;; *) continue ;; esac
    if [ -n "$config" ]; then
        case "$cmd" in *" $config"*) ;; *) continue ;; esac
    fi
    pids+=("${d#/proc/}")
done
if [ ${#pids[@]} -eq 0 ]; then
    echo "No kafka server to stop" >&2
    exit 1
fi
kill -TERM "${pids[@]}"
for _ in $(seq 1 "$timeout"); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && exit 0
    sleep 1
done
echo "Kafka server(s) ${pids[*]} still running after ${timeout}s" >&2
exit 1
