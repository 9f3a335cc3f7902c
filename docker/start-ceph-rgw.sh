#!/usr/bin/env bash
# Starts a minimal single-node Ceph (monitor, memstore OSD, RGW) on 127.0.0.1 for the S3 tests: no systemd, no
# cephx. RGW answers on http://127.0.0.1:${PORT:-7480} with access key TESACCESSKEY / secret TESSECRETKEY.
# Data lives in RAM (memstore, up to 6 GiB) and is gone after a stop. A second instance beside the first needs its
# own DIR, PORT and MON_PORT (its OSD takes the next free ports from 6800). To start from empty, run
# docker/stop-ceph-rgw.sh DIR first (.ci/run does); leftover daemons of DIR are stopped here anyway.
#
# A new Ceph client's first monitor command now and then goes out with an all-zero fsid and is refused ("wrong
# fsid"); that used to kill `ceph osd new` or the OSD's start. So every ceph/radosgw-admin call here is retried
# (each under `timeout`), the OSD and RGW starts are retried, and every wait is bounded: the script either ends
# with "RGW ready on ..." or exits non-zero saying which log to read.
# Usage: start-ceph-rgw.sh [DIR] [PORT] [MON_PORT]
set -euo pipefail
dir=$(realpath -m "${1:-/tmp/tesp-ceph}")   # absolute: daemons chdir to /, and stop-ceph-rgw.sh matches this path
port=${2:-7480}
mon_port=${3:-6789}
if curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/"; then
  echo "something already answers on 127.0.0.1:$port"
  exit 0
fi
for tool in ceph ceph-mon ceph-osd radosgw radosgw-admin monmaptool uuidgen curl timeout; do
  command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install ceph-mon ceph-osd radosgw ceph-common uuid-runtime curl" >&2; exit 1; }
done
"$(dirname "$0")/stop-ceph-rgw.sh" "$dir"
if (exec 3<>"/dev/tcp/127.0.0.1/$mon_port") 2>/dev/null; then
  echo "127.0.0.1:$mon_port is taken (another Ceph monitor?): pass a free MON_PORT as third argument" >&2
  exit 1
fi
rm -rf "$dir"
mkdir -p "$dir"/{mon.a,run,log,rgw}
log=$dir/log/start.log     # stderr of every command below; the daemons write their own logs next to it
fsid=$(uuidgen)
cat > "$dir/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
mon initial members = a
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
keyring = /dev/null
ms bind ipv4 = true
ms bind ipv6 = false
[mon]
mon data = $dir/\$name
mon cluster log file = $dir/log/cluster.log
[osd]
osd data = $dir/\$name
osd objectstore = memstore
memstore device bytes = 6442450944
osd max object name len = 256
osd max object namespace len = 64
# Each is one more monitor command at boot that can be refused; the script places the OSD in CRUSH itself.
osd class update on start = false
osd crush update on start = false
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$port
rgw data = $dir/rgw
rgw dns name = localhost
CONF
conf=(-c "$dir/ceph.conf")

fail() { echo "$*" >&2; exit 1; }
# alive PIDFILE: the pid in PIDFILE runs. A zombie counts as dead: PID 1 on our machines reaps late.
alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && [ -d "/proc/$pid" ] &&
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}
# retry N CMD...: runs CMD up to N times, a second apart; prints the stdout of the run that succeeded only, so
# that $(retry ...) never captures a failed attempt's output. Lines "retry: ..." in the log count the failed ones.
retry() {
  local n=$1 i out
  shift
  for ((i = 1; i <= n; i++)); do
    if out=$("$@" 2>>"$log"); then
      [ -z "$out" ] || printf '%s\n' "$out"
      return 0
    fi
    echo "retry: attempt $i of $n failed: $*" >>"$log"
    sleep 1
  done
  return 1
}
ceph_() { timeout 15 ceph "${conf[@]}" "$@"; }
# The daemons below are started under `timeout` too: each returns once its forked daemon has initialised (or failed
# to), and a launcher stuck talking to the monitor would otherwise hang the script.
# stop_daemon PIDFILE: ends a daemon that failed to come up, so that the next attempt starts clean.
stop_daemon() {
  local pid i
  alive "$1" || return 0
  pid=$(cat "$1")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do alive "$1" || return 0; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do alive "$1" || return 0; sleep 0.25; done
}

monmaptool --create --clobber --fsid "$fsid" --addv a "[v1:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null 2>>"$log"
timeout 60 ceph-mon "${conf[@]}" --mkfs -i a --monmap "$dir/monmap" 2>>"$log" || fail "ceph-mon --mkfs failed; see $log"
timeout 60 ceph-mon "${conf[@]}" -i a 2>>"$log" || fail "ceph-mon did not start; see $log and $dir/log/mon.a.log"
# Up means answering with our fsid, not merely listening.
mon_up=0
for ((end = SECONDS + 30; SECONDS < end; )); do
  alive "$dir/run/mon.a.pid" || fail "ceph-mon exited; see $dir/log/mon.a.log"
  if [ "$(timeout 10 ceph "${conf[@]}" fsid 2>>"$log")" = "$fsid" ]; then mon_up=1; break; fi
  echo "retry: the monitor does not answer with our fsid yet" >>"$log"
  sleep 1
done
[ "$mon_up" = 1 ] || fail "the monitor did not answer within 30 s; see $dir/log/mon.a.log and $log"

osd_uuid=$(uuidgen)
# The same uuid always gets the same id, so repeating `osd new` after a refused or timed-out attempt is safe.
osd_id=$(retry 10 ceph_ osd new "$osd_uuid") || fail "ceph osd new failed; see $log"
[[ $osd_id =~ ^[0-9]+$ ]] || fail "ceph osd new printed '$osd_id', not an OSD id; see $log"
retry 10 ceph_ osd crush add "osd.$osd_id" 1.0 root=default host=localhost >/dev/null ||
  fail "ceph osd crush add failed; see $log"
osd_dir=$dir/osd.$osd_id
osd_pid=$dir/run/osd.$osd_id.pid
osd_up=0
for attempt in 1 2 3; do
  # A refused boot can leave a half-made store: start each attempt from an empty one.
  rm -rf "$osd_dir"
  mkdir -p "$osd_dir"
  if timeout 60 ceph-osd "${conf[@]}" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" 2>>"$log" &&
    timeout 60 ceph-osd "${conf[@]}" -i "$osd_id" 2>>"$log"; then
    for ((end = SECONDS + 30; SECONDS < end; )); do
      alive "$osd_pid" || break
      if ceph_ osd stat 2>>"$log" | grep -q '1 up'; then osd_up=1; break; fi
      sleep 1
    done
  fi
  [ "$osd_up" = 1 ] && break
  echo "retry: OSD start attempt $attempt of 3 failed" >>"$log"
  stop_daemon "$osd_pid"
  sleep 1
done
[ "$osd_up" = 1 ] || fail "the OSD did not come up in 3 attempts; see $dir/log/osd.$osd_id.log and $log"

rgw_pid=$dir/run/client.rgw.a.pid
rgw_up=0
for attempt in 1 2 3; do
  rm -f "$rgw_pid"    # a failed attempt's pid file would read as this attempt's dead daemon
  if timeout 60 radosgw "${conf[@]}" -n client.rgw.a 2>>"$log"; then
    # Unlike ceph-mon and ceph-osd, radosgw's launcher returns before its daemon has written the pid file (and
    # says nothing about how the start went): dead means a pid file naming a dead process, or none after 15 s.
    # The first start creates RGW's pools, which takes a while on a fresh cluster.
    launched=$SECONDS
    for ((end = SECONDS + 90; SECONDS < end; )); do
      if curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/"; then rgw_up=1; break; fi
      if [ -s "$rgw_pid" ]; then alive "$rgw_pid" || break; elif [ $((SECONDS - launched)) -ge 15 ]; then break; fi
      sleep 1
    done
  fi
  [ "$rgw_up" = 1 ] && break
  echo "retry: RGW start attempt $attempt of 3 failed" >>"$log"
  stop_daemon "$rgw_pid"
  sleep 1
done
[ "$rgw_up" = 1 ] || fail "RGW did not answer on 127.0.0.1:$port in 3 attempts; see $dir/log/client.rgw.a.log and $log"

# An attempt that timed out may still have created the user: accept it when it is there.
test_user() {
  timeout 60 radosgw-admin "${conf[@]}" user info --uid=tes >/dev/null 2>&1 ||
    timeout 60 radosgw-admin "${conf[@]}" user create --uid=tes --display-name=tes \
      --access-key=TESACCESSKEY --secret-key=TESSECRETKEY >/dev/null
}
retry 5 test_user || fail "radosgw-admin could not create the user tes; see $log"
echo "RGW ready on http://127.0.0.1:$port"
