#!/usr/bin/env bash
# Builds the small local images the tests and the README example use, from busybox-static, because
# no registry is reachable on our machines. Tags: alpine:latest and ubuntu:20.04.
set -euo pipefail
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || { echo "busybox not found at $BUSYBOX: apt-get install busybox-static" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/usr/bin"
chmod 1777 "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in sh cat echo md5sum sha1sum sha256sum sleep wc ls cp mv rm mkdir touch grep head tail tr tee \
  env true false test pwd id printf find xargs sed awk seq timeout dd yes base64 du stat kill; do
  ln -s busybox "$root/bin/$applet"
done
ln -s ../../bin/busybox "$root/usr/bin/env"
# busybox has no bash applet; this wrapper runs bash invocations with ash (no bash-only syntax).
printf '#!/bin/sh\nexec /bin/sh "$@"\n' > "$root/bin/bash"
chmod 755 "$root/bin/bash"
tar -C "$root" -c . | docker import --change 'CMD ["sh"]' - alpine:latest >/dev/null
docker tag alpine:latest ubuntu:20.04
docker run --rm --network none alpine:latest sh -c 'echo hello | md5sum' >/dev/null
echo "built alpine:latest and ubuntu:20.04"
