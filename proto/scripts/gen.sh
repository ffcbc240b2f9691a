#!/usr/bin/env bash
# Generates the ts-proto stubs and Envoy's descriptor set from src/**/*.proto.
# Usage: gen.sh [OUT_DIR]   (default: this workspace; gen:check passes a temp dir)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$here}"
root="$(cd "$here/.." && pwd)"
plugin="$root/node_modules/.bin/protoc-gen-ts_proto"
googleapis="$root/node_modules/google-proto-files"

if ! command -v protoc >/dev/null; then
  echo "protoc not found: install Debian's protobuf-compiler (apt-get install -y protobuf-compiler)" >&2
  exit 1
fi

cd "$here/src"
mapfile -t files < <(find redpacket -name '*.proto' | LC_ALL=C sort)

rm -rf "$out/gen" && mkdir -p "$out/gen" "$out/descriptors"
protoc -I . -I "$googleapis" \
  --plugin=protoc-gen-ts_proto="$plugin" \
  --ts_proto_out="$out/gen" \
  --ts_proto_opt=outputServices=grpc-js,env=node,forceLong=bigint,useDate=true,esModuleInterop=true,importSuffix=.js,exportCommonSymbols=false,annotateFilesWithVersion=false,useOptionals=none \
  "${files[@]}"
protoc -I . -I "$googleapis" --include_imports \
  --descriptor_set_out="$out/descriptors/redpacket.pb" "${files[@]}"
