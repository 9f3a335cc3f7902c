#!/usr/bin/env bash
# Stops the daemons docker/start-ceph-rgw.sh started in DIR, by their pid files only, and waits until they are gone.
# A pid counts only while its command line names DIR's conf (-c DIR/ceph.conf): a stale pid file may name a pid
# reused since, or a daemon of another instance. Zombies count as gone (PID 1 on our machines reaps late).
# SIGTERM first; whatever still runs after about 10 s gets SIGKILL.
# Usage: stop-ceph-rgw.sh [DIR]
set -euo pipefail
dir=$(realpath -m "${1:-/tmp/tesp-ceph}")   # start-ceph-rgw.sh passes this absolute path to the daemons
# ours PID: PID runs, is no zombie, and was started with -c DIR/ceph.conf.
ours() {
  local cmdline
  [ -d "/proc/$1" ] || return 1
  ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1   # it may end meanwhile
  [[ " $cmdline" == *" -c $dir/ceph.conf "* ]]
}
pids=()
for f in "$dir"/run/*.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f" 2>/dev/null) || continue
  [[ $pid =~ ^[0-9]+$ ]] && ours "$pid" || continue
  kill "$pid" 2>/dev/null || true
  pids+=("$pid")
done
# left: the pids of ours still running.
left() {
  local pid
  running=()
  for pid in "${pids[@]}"; do ! ours "$pid" || running+=("$pid"); done
  [ ${#running[@]} -gt 0 ]
}
for _ in $(seq 1 40); do
  left || exit 0
  sleep 0.25
done
echo "still running after 10 s, sending SIGKILL: ${running[*]}" >&2
kill -9 "${running[@]}" 2>/dev/null || true
for _ in $(seq 1 20); do
  left || exit 0
  sleep 0.25
done
echo "could not stop ${running[*]}" >&2
exit 1
