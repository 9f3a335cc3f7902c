#!/usr/bin/env bash
# Stops the daemons docker/start-ceph-rgw.sh started, by their pid files only.
dir=${1:-/tmp/tesp-ceph}
for f in "$dir"/run/client.rgw.a.pid "$dir"/run/osd.0.pid "$dir"/run/mon.a.pid; do
  [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
done
exit 0
