#!/usr/bin/env bash
# Fails when the committed generated code differs from a fresh generation.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$here/scripts/gen.sh" "$tmp"
if ! diff -r "$here/gen" "$tmp/gen" >/dev/null || ! cmp -s "$here/descriptors/redpacket.pb" "$tmp/descriptors/redpacket.pb"; then
  diff -r "$here/gen" "$tmp/gen" | head -40 >&2 || true
  echo "proto/: generated code is stale; run 'npm run gen' and commit the result" >&2
  exit 1
fi
echo "proto/: generated code is up to date"
