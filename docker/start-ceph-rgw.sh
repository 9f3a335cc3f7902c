#!/usr/bin/env bash
# Starts a minimal single-node Ceph (monitor, memstore OSD, RGW) on 127.0.0.1 for the S3 tests: no systemd, no
# cephx. RGW answers on http://127.0.0.1:${PORT:-7480} with access key TESACCESSKEY / secret TESSECRETKEY.
# Data lives in RAM (memstore, up to 6 GiB) and is gone after a stop. One instance per machine (fixed monitor
# port 6789); to start from empty, run docker/stop-ceph-rgw.sh first (.ci/run does).
# Usage: start-ceph-rgw.sh [DIR] [PORT]
set -euo pipefail
dir=${1:-/tmp/tesp-ceph}
port=${2:-7480}
if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
  echo "something already answers on 127.0.0.1:$port"
  exit 0
fi
for tool in ceph-mon ceph-osd radosgw radosgw-admin monmaptool uuidgen; do
  command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install ceph-mon ceph-osd radosgw ceph-common uuid-runtime" >&2; exit 1; }
done
rm -rf "$dir"
mkdir -p "$dir"/{mon.a,osd.0,run,log,rgw}
fsid=$(uuidgen)
cat > "$dir/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:6789
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
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$port
rgw data = $dir/rgw
rgw dns name = localhost
CONF
conf=(-c "$dir/ceph.conf")
monmaptool --create --clobber --fsid "$fsid" --addv a "[v1:127.0.0.1:6789]" "$dir/monmap" >/dev/null
ceph-mon "${conf[@]}" --mkfs -i a --monmap "$dir/monmap"
ceph-mon "${conf[@]}" -i a
for _ in $(seq 1 30); do ceph "${conf[@]}" -s >/dev/null 2>&1 && break; sleep 1; done
osd_uuid=$(uuidgen)
osd_id=$(ceph "${conf[@]}" osd new "$osd_uuid")
ceph-osd "${conf[@]}" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" 2>>"$dir/log/osd-mkfs.log"
ceph-osd "${conf[@]}" -i "$osd_id"
for _ in $(seq 1 60); do ceph "${conf[@]}" osd stat 2>/dev/null | grep -q '1 up' && break; sleep 1; done
radosgw "${conf[@]}" -n client.rgw.a
for _ in $(seq 1 90); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 1; done
radosgw-admin "${conf[@]}" user create --uid=tes --display-name=tes --access-key=TESACCESSKEY --secret-key=TESSECRETKEY >/dev/null
echo "RGW ready on http://127.0.0.1:$port"
