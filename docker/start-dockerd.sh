#!/usr/bin/env bash
# Starts a Docker engine for tests when none answers: no bridge, no iptables rules, so the
# containers tesp runs have no network and the host's firewall is left alone.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  echo "docker engine already running"
  exit 0
fi
command -v dockerd >/dev/null || { echo "dockerd not found: apt-get install docker.io" >&2; exit 1; }
setsid dockerd --host unix:///var/run/docker.sock --bridge=none --iptables=false --ip-masq=false \
  >/var/log/dockerd.log 2>&1 </dev/null &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && { echo "docker engine started"; exit 0; }
  sleep 1
done
echo "docker engine did not start; see /var/log/dockerd.log" >&2
exit 1
