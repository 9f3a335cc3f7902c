#!/usr/bin/env bash
# Stops the wire server that start-mongo-wire.sh started (SIGTERM, then SIGKILL after 5 s) and removes its pidfile.
# Usage: stop-mongo-wire.sh
set -euo pipefail
dir=/tmp/tesp-mongo-wire
pidfile="$dir/mongo-wire.pid"
[ -f "$pidfile" ] || { echo "mongo-wire not running (no $pidfile)"; exit 0; }
pid=$(cat "$pidfile")
# Only the launcher: a stale pidfile may name a pid the system has since given to another process.
if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'mongo-wire/server.js'; then
  kill -TERM "$pid"
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  echo "mongo-wire stopped (pid $pid)"
else
  echo "mongo-wire was not running (stale pid $pid)"
fi
rm -f "$pidfile"
