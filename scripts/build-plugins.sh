#!/usr/bin/env bash
# Builds the plugins workspace (plugins/) as WebAssembly components for
# wasm32-wasip2 and copies them to plugins/dist/<name>.wasm; the test-only
# `hostile` plugin goes to plugins/dist/test/hostile.wasm, away from the
# plugins composer loads. Cargo rebuilds only what changed, and a component
# is copied only when its content changed, so a second run does nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
plugins="$root/plugins"
target=wasm32-wasip2

if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi

cargo build --quiet --manifest-path "$plugins/Cargo.toml" --target "$target" --release

built="$plugins/target/$target/release"
mkdir -p "$plugins/dist/test"
for manifest in "$plugins"/*/Cargo.toml; do
  name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)"
  [ -n "$name" ] || continue
  file="${name//-/_}.wasm"
  if [ "$name" = hostile ]; then
    dest="$plugins/dist/test/$file"
  else
    dest="$plugins/dist/$file"
  fi
  cmp -s "$built/$file" "$dest" || cp "$built/$file" "$dest"
  printf '%-34s %8s bytes  %s\n' "$name" "$(wc -c <"$dest" | tr -d ' ')" "${dest#"$root"/}"
done
