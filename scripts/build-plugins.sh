#!/usr/bin/env bash
# Builds the plugins in plugins/ as WebAssembly components into
# plugins/dist/<name>.wasm; the test-only `hostile*` plugins go to
# plugins/dist/test/, away from the plugins composer loads. A second run
# does nothing.
#
# - Rust (plugins/*/Cargo.toml, one cargo workspace): built for
#   wasm32-wasip2; cargo rebuilds only what changed, and a component is
#   copied only when its content changed.
# - Python (plugins/*/pyproject.toml): componentize-py, pip-installed into
#   a virtual environment in .composer/tools on first use.
# - JavaScript (plugins/*/package.json): componentize-js, npm-installed
#   into a prefix in .composer/tools on first use.
#
# A Python or JavaScript component is rebuilt only when its source hash
# changes: the hash of its files, the SDK module, the WIT and the tool's
# version, stored as plugins/dist/.<name>.source-hash. It is the same hash,
# tool folder and build as `composer plugin build DIR --out plugins/dist`
# (host/src/cli/plugin_build.rs), so the two agree on what is up to date.
#
# Tools can live elsewhere: COMPOSER_TOOLS_DIR=/path bash scripts/build-plugins.sh
#
# `--install [DIR]` also copies the standard plugins (all but test ones)
# into the user's plugin folder, DIR or
# `${XDG_DATA_HOME:-$HOME/.local/share}/composer/plugins`, where `composer`
# finds them wherever it runs (see docs/decisions.md, "Plugin discovery").
set -euo pipefail
install_dir=""
if [ "${1:-}" = "--install" ]; then
  install_dir="${2:-${XDG_DATA_HOME:-$HOME/.local/share}/composer/plugins}"
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
plugins="$root/plugins"
dist="$plugins/dist"
target=wasm32-wasip2
tools="${COMPOSER_TOOLS_DIR:-$root/.composer/tools}"
wit="$root/plugin-sdk/wit/plugin.wit"
py_sdk="$root/plugin-sdk/python/composer_plugin.py"
js_sdk="$root/plugin-sdk/js/composer-plugin.js"
componentize_py_version=0.25.1
componentize_js_version=0.23.0

mkdir -p "$dist/test"
# Build folders of this run, removed however it ends.
trap 'rm -rf "$dist"/.build-$$-* "$dist"/test/.build-$$-*' EXIT

report() { # name file
  printf '%-34s %8s bytes  %s\n' "$1" "$(wc -c <"$2" | tr -d ' ')" "${2#"$root"/}"
}

dest_for() { # name
  case "$1" in
    hostile*) echo "$dist/test" ;;
    *) echo "$dist" ;;
  esac
}

# --- Rust ---------------------------------------------------------------------
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi

# Their own target folder, whatever CARGO_TARGET_DIR says: the components
# are picked up from it below.
cargo build --quiet --manifest-path "$plugins/Cargo.toml" --target "$target" --release \
  --target-dir "$plugins/target"

built="$plugins/target/$target/release"
for manifest in "$plugins"/*/Cargo.toml; do
  name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)"
  [ -n "$name" ] || continue
  file="${name//-/_}.wasm"
  dest="$(dest_for "$name")/$file"
  cmp -s "$built/$file" "$dest" || cp "$built/$file" "$dest"
  report "$name" "$dest"
done

# --- Python and JavaScript ------------------------------------------------------
sha() { sha256sum | cut -d' ' -f1; }

# The source hash of plugin folder $1 built with SDK file $2 by tool label $3.
source_hash() {
  {
    (cd "$1" && find . \( -name dist -o -name target -o -name node_modules \
      -o -name __pycache__ -o -name '.?*' \) -prune -o -type f ! -name '*.pyc' \
      ! -path ./tests.json -print | LC_ALL=C sort | while IFS= read -r f; do
      printf '%s  %s\n' "$(sha <"$f")" "$f"
    done)
    printf '%s  sdk\n' "$(sha <"$2")"
    printf '%s  wit\n' "$(sha <"$wit")"
    printf '%s\n' "$3"
  } | sha
}

# Installs a tool into $tools/$1 (via a temporary folder, renamed when
# complete) with the command "$2 TMP"; $3 says what is being installed.
ensure_tool() {
  local dir="$tools/$1"
  [ -f "$dir/.installed" ] && return 0
  mkdir -p "$tools"
  echo "installing $3 into ${dir#"$root"/} (first use only) ..." >&2
  local tmp="$tools/.$1.$$.tmp"
  rm -rf "$tmp"
  if ! "$2" "$tmp"; then
    rm -rf "$tmp"
    echo "error: installing $3 failed" >&2
    return 1
  fi
  mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
}

# (Chained with &&: these run as an `if` condition, where `set -e` is off.)
# Into a virtual environment, or where `venv` is missing (Debian without
# python3-venv) into a plain folder with `pip install --target`.
install_py() {
  local pip=(-m pip install --quiet --disable-pip-version-check)
  if python3 -m venv "$1" 2>/dev/null; then
    "$1/bin/python" "${pip[@]}" "componentize-py==$componentize_py_version"
  else
    rm -rf "$1" &&
      python3 "${pip[@]}" --target "$1/site" "componentize-py==$componentize_py_version"
  fi && echo "$componentize_py_version" >"$1/.installed"
}

install_js() {
  mkdir -p "$1" &&
    npm install --prefix "$1" --no-audit --no-fund --no-save --loglevel=error \
      "@bytecodealliance/componentize-js@$componentize_js_version" >/dev/null &&
    echo "$componentize_js_version" >"$1/.installed"
}

# Copies the source files of plugin folder $1 into $2.
copy_sources() {
  (cd "$1" && find . \( -name dist -o -name target -o -name node_modules \
    -o -name __pycache__ -o -name '.?*' \) -prune -o -type f ! -name '*.pyc' \
    ! -path ./tests.json -print) | while IFS= read -r f; do
    mkdir -p "$2/$(dirname "$f")"
    cp "$1/$f" "$2/$f"
  done
}

# Builds plugin folder $1 (language $2: python or js) unless it is up to date.
build_interpreted() {
  local dir="$1" lang="$2" name module sdk label out hash stage
  if [ "$lang" = python ]; then
    name="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["name"])' "$dir/pyproject.toml")"
    module="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get("tool", {}).get("composer", {}).get("module", "functions"))' "$dir/pyproject.toml")"
    sdk="$py_sdk"
    label="componentize-py $componentize_py_version"
  else
    name="$(node -p 'require(process.argv[1]).name' "$dir/package.json")"
    module="$(node -p '(require(process.argv[1]).main || "functions.js").replace(/^\.\//, "")' "$dir/package.json")"
    sdk="$js_sdk"
    label="componentize-js $componentize_js_version"
  fi
  name="${name##*/}"
  name="${name//-/_}"
  out="$(dest_for "$name")"
  hash="$(source_hash "$dir" "$sdk" "$label")"
  if [ -f "$out/$name.wasm" ] && [ "$(cat "$out/.$name.source-hash" 2>/dev/null)" = "$hash" ]; then
    report "$name" "$out/$name.wasm"
    return 0
  fi
  # The tool is installed only when something needs building.
  if [ "$lang" = python ]; then
    ensure_tool "componentize-py-$componentize_py_version" install_py \
      "componentize-py $componentize_py_version (Python plugin builder, ~70 MB) with pip"
  else
    need npm JavaScript
    ensure_tool "componentize-js-$componentize_js_version" install_js \
      "componentize-js $componentize_js_version (JavaScript plugin builder, ~390 MB) with npm"
  fi
  echo "building $name ($lang plugin) ..." >&2
  stage="$out/.build-$$-$name"
  rm -rf "$stage"
  mkdir -p "$stage/src" "$stage/wit" "$stage/main" "$stage/sdk" "$stage/no-venv/lib/python/site-packages"
  copy_sources "$dir" "$stage/src"
  cp "$wit" "$stage/wit/plugin.wit"
  if [ "$lang" = python ]; then
    cp "$sdk" "$stage/sdk/composer_plugin.py"
    cat >"$stage/main/composer_plugin_main.py" <<EOF
import composer_plugin
import $module  # noqa: F401  (registers the plugin's functions)

if not composer_plugin.functions():
    raise SystemExit("module \`$module\` registers no functions: decorate them with @composer_plugin.function")
WitWorld = composer_plugin.WitWorld
EOF
    local py_tool="$tools/componentize-py-$componentize_py_version" python=python3 site=''
    if [ -x "$py_tool/bin/python" ]; then python="$py_tool/bin/python"; else site="$py_tool/site"; fi
    (cd "$stage" && VIRTUAL_ENV="$stage/no-venv" PYTHONPATH="$site" \
      "$python" -c \
      $'import sys\nfrom componentize_py import script\nsys.argv[0] = \'componentize-py\'\nsys.exit(script())' \
      --quiet -d wit -w plugin componentize -p main -p src -p sdk \
      composer_plugin_main -o "$stage/out.wasm")
  else
    cp "$sdk" "$stage/src/composer-plugin.js"
    printf 'import "./%s";\nexport { describe, call } from "./composer-plugin.js";\n' \
      "$module" >"$stage/src/__composer_main.js"
    (cd "$stage/src" && node \
      "$tools/componentize-js-$componentize_js_version/node_modules/@bytecodealliance/componentize-js/src/cli.js" \
      __composer_main.js --wit "$stage/wit/plugin.wit" --world-name plugin \
      -d http fetch-event -o "$stage/out.wasm" >/dev/null)
  fi
  cp "$stage/out.wasm" "$out/.$name.$$.tmp"
  mv -f "$out/.$name.$$.tmp" "$out/$name.wasm"
  echo "$hash" >"$out/.$name.source-hash"
  rm -rf "$stage"
  report "$name" "$out/$name.wasm"
}

shopt -s nullglob
python_plugins=("$plugins"/*/pyproject.toml)
js_plugins=("$plugins"/*/package.json)
need() { # command what-for
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "error: the $2 plugins in plugins/ need \`$1\` (Python 3.10+ with pip; Node.js 18+ with npm)" >&2
  exit 1
}
[ ${#python_plugins[@]} -eq 0 ] || need python3 Python
[ ${#js_plugins[@]} -eq 0 ] || need node JavaScript
for manifest in "${python_plugins[@]}"; do
  build_interpreted "$(dirname "$manifest")" python
done
for manifest in "${js_plugins[@]}"; do
  build_interpreted "$(dirname "$manifest")" js
done
if [ -n "$install_dir" ]; then
  mkdir -p "$install_dir"
  for file in "$plugins"/dist/*.wasm; do
    cmp -s "$file" "$install_dir/$(basename "$file")" || cp "$file" "$install_dir/"
  done
  echo "installed $(ls "$plugins"/dist/*.wasm | wc -l | tr -d ' ') plugins into $install_dir"
fi
