#!/usr/bin/env bash
# Starts and stops the test Ceph RGW (docker/start-ceph-rgw.sh, docker/stop-ceph-rgw.sh) CYCLES times and checks
# each start with a real S3 round trip: bucket made, small object put, read back and compared, both removed.
# Prints per cycle the start time and OK/FAIL, then "N of M cycles passed"; exits non-zero on any failure.
# Each OK line says how many failed attempts the start retried ("retry:" lines of its log) and how many commands
# the monitor refused with "wrong fsid" (its log's "handle_command on fsid" lines). The next start wipes DIR, so
# the logs of a failed cycle are kept in DIR.failed-N, those of a retried one in DIR.retried-N.
# The defaults differ from the test RGW's (/tmp/tesp-ceph, 7480, 6789) so that it may run beside it; never point
# it at the test RGW's DIR: every cycle ends with a stop.
# The round trip uses the project's @aws-sdk/client-s3 (run npm ci first); without it, the check falls back to
# radosgw-admin finding the user plus an anonymous ListBuckets answered with S3 XML.
# Usage: check-ceph-rgw-cycles.sh [CYCLES] [DIR] [PORT] [MON_PORT]
set -euo pipefail
cycles=${1:-10}
dir=$(realpath -m "${2:-/tmp/tesp-ceph-cycles}")
port=${3:-7490}
mon_port=${4:-6792}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
if curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/"; then
  echo "something already answers on 127.0.0.1:$port; the check needs the port free" >&2
  exit 1
fi
if (cd "$root" && node -e 'require.resolve("@aws-sdk/client-s3")') >/dev/null 2>&1; then
  mode=s3
else
  mode=basic
  echo "no @aws-sdk/client-s3 under $root/node_modules (npm ci): checking user and anonymous ListBuckets only"
fi

round_trip() {
  (cd "$root" && ENDPOINT="http://127.0.0.1:$port" BUCKET="cycle-check-$1" timeout 60 node -e '
    const s3 = require("@aws-sdk/client-s3");
    const client = new s3.S3Client({
      endpoint: process.env.ENDPOINT, region: "us-east-1", forcePathStyle: true,
      credentials: { accessKeyId: "TESACCESSKEY", secretAccessKey: "TESSECRETKEY" },
      requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED",
    });
    const Bucket = process.env.BUCKET, Key = "hello.txt", body = `hello ${Date.now()} ${Math.random()}`;
    (async () => {
      await client.send(new s3.CreateBucketCommand({ Bucket }));
      await client.send(new s3.PutObjectCommand({ Bucket, Key, Body: body }));
      const got = await (await client.send(new s3.GetObjectCommand({ Bucket, Key }))).Body.transformToString();
      if (got !== body) throw new Error(`read back ${JSON.stringify(got)}, wrote ${JSON.stringify(body)}`);
      await client.send(new s3.DeleteObjectCommand({ Bucket, Key }));
      await client.send(new s3.DeleteBucketCommand({ Bucket }));
    })().catch((e) => { console.error(e.message ?? e); process.exit(1); });
  ')
}
basic_check() {
  timeout 60 radosgw-admin -c "$dir/ceph.conf" user info --uid=tes | grep -q TESACCESSKEY || return 1
  local out
  out=$(curl -s --max-time 10 -w '\n%{http_code}' "http://127.0.0.1:$port/")
  case ${out##*$'\n'} in 200 | 403) ;; *) return 1 ;; esac
  grep -q '<?xml' <<<"$out"
}

"$here/stop-ceph-rgw.sh" "$dir"
rm -rf "$dir".failed-* "$dir".retried-*     # an earlier run's
passed=0
for ((i = 1; i <= cycles; i++)); do
  out=$dir.cycle.log       # outside DIR, which the start wipes
  t0=$EPOCHREALTIME
  ok=1
  "$here/start-ceph-rgw.sh" "$dir" "$port" "$mon_port" >"$out" 2>&1 || ok=0
  t1=$EPOCHREALTIME
  if [ "$ok" = 1 ]; then
    if [ "$mode" = s3 ]; then round_trip "$i" >>"$out" 2>&1 || ok=0; else basic_check >>"$out" 2>&1 || ok=0; fi
  fi
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  retries=$(grep -c '^retry:' "$dir/log/start.log" 2>/dev/null || true)
  wrong_fsid=$(grep -c 'handle_command on fsid' "$dir/log/mon.a.log" 2>/dev/null || true)
  "$here/stop-ceph-rgw.sh" "$dir" >>"$out" 2>&1 || { echo "stop failed" >>"$out"; ok=0; }
  if [ "$ok" = 1 ]; then
    passed=$((passed + 1))
    echo "cycle $i: start ${secs} s, OK (${retries:-0} retries, ${wrong_fsid:-0} refused with 'wrong fsid')"
    if [ "${retries:-0}" != 0 ] || [ "${wrong_fsid:-0}" != 0 ]; then
      cp -r "$dir/log" "$dir.retried-$i"
    fi
  else
    rm -rf "$dir.failed-$i"
    cp -r "$dir/log" "$dir.failed-$i" 2>/dev/null || mkdir -p "$dir.failed-$i"
    cp "$out" "$dir.failed-$i/"
    echo "cycle $i: start ${secs} s, FAIL ($(tail -n 1 "$out")); logs in $dir.failed-$i"
  fi
done
rm -f "$dir.cycle.log"
echo "$passed of $cycles cycles passed ($mode check)"
[ "$passed" = "$cycles" ]
