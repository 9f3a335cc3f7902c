#!/usr/bin/env bash
# Stops the daemons docker/start-ceph-rgw.sh started, by their pid files only, and waits until they are gone.
dir=${1:-/tmp/tesp-ceph}
pids=()
for f in "$dir"/run/client.rgw.a.pid "$dir"/run/osd.0.pid "$dir"/run/mon.a.pid; do
  if [ -f "$f" ]; then
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null && pids+=("$pid")
  fi
done
for _ in $(seq 1 40); do
  alive=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ "$alive" = 0 ] && exit 0
  sleep 0.25
done
for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
exit 0
