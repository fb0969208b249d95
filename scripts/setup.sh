# Sourced by the other scripts: installs what a fresh machine with Rust,
# Python 3 (with pip) and Node.js (with npm) lacks (rustfmt, clippy, the
# wasm32-wasip2 target; componentize-py and componentize-js into the
# project-local .composer/tools) and builds the plugins (a no-op when
# nothing changed). Quiet when everything is already there, except for a
# line while a tool installs or a Python/JavaScript plugin builds.
if ! command -v cargo >/dev/null 2>&1; then
  echo "composer needs a Rust toolchain (cargo): https://rustup.rs" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
# --install: the standard plugins go to the user plugin folder, where
# composer finds them wherever it runs (corpus recipes from their folders).
bash scripts/build-plugins.sh --install >/dev/null
