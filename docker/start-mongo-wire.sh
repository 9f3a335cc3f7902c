#!/usr/bin/env bash
# Starts the test-only MongoDB wire-protocol server (CongoDB, test/mongo-wire/server.js) on 127.0.0.1 (default
# port 27027), detached and in memory: its data ends with the process. Needs `npm ci --prefix test/mongo-wire`.
# Usage: start-mongo-wire.sh [PORT]; writes /tmp/tesp-mongo-wire/mongo-wire.pid and log/server.log there.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-27027}
dir=/tmp/tesp-mongo-wire
[ -d test/mongo-wire/node_modules/@push.rocks/smartmongo ] || {
  echo "CongoDB not installed: npm ci --prefix test/mongo-wire --no-audit --no-fund" >&2; exit 1; }
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "something already listens on 127.0.0.1:$port"
  exit 0
fi
mkdir -p "$dir/log"
setsid node test/mongo-wire/server.js --port "$port" >"$dir/log/server.log" 2>&1 </dev/null &
echo $! > "$dir/mongo-wire.pid"
for _ in $(seq 1 40); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "mongo-wire (CongoDB) ready on 127.0.0.1:$port"; exit 0; fi
  kill -0 "$(cat "$dir/mongo-wire.pid")" 2>/dev/null || break
  sleep 0.25
done
echo "mongo-wire did not start; see $dir/log/server.log" >&2
cat "$dir/log/server.log" >&2 || true
exit 1
