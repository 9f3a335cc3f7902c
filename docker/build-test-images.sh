#!/usr/bin/env bash
# Makes sure the small images the tests and the README example use exist on the Docker engine. No registry is
# reachable on our machines, so a missing tag gets a stand-in built from busybox-static; a tag already present is
# left alone, since it may be a developer's real image. Tags: $TEST_IMAGE_TAGS (default alpine:latest ubuntu:20.04);
# the first one is smoke-tested at the end.
set -euo pipefail
read -r -a tags <<<"${TEST_IMAGE_TAGS:-alpine:latest ubuntu:20.04}"
[ ${#tags[@]} -gt 0 ] || { echo "TEST_IMAGE_TAGS is empty" >&2; exit 1; }
missing=()
for tag in "${tags[@]}"; do
  if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag is present; left as it is"
  else
    missing+=("$tag")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
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
  # One import for the first missing tag; the others are tags of the same image.
  tar -C "$root" -c . | docker import --change 'CMD ["sh"]' - "${missing[0]}" >/dev/null
  echo "built ${missing[0]} from busybox-static"
  for tag in "${missing[@]:1}"; do
    docker tag "${missing[0]}" "$tag"
    echo "built $tag from busybox-static"
  done
fi
docker run --rm --network none "${tags[0]}" sh -c 'echo hello | md5sum' >/dev/null
