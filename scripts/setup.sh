# Sourced by the other scripts: installs what a fresh machine with Rust
# lacks (rustfmt, clippy, the wasm32-wasip2 target) and builds the plugins
# (a no-op when nothing changed). Quiet when everything is already there.
if ! command -v cargo >/dev/null 2>&1; then
  echo "composer needs a Rust toolchain (cargo): https://rustup.rs" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
bash scripts/build-plugins.sh >/dev/null
