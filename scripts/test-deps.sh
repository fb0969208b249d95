#!/usr/bin/env bash
# Run by scripts/test.sh: installs what only the tests need, here the
# headless Chromium and its WebDriver that the web page's end-to-end tests
# drive (Debian's `chromium` and `chromium-driver`). Quiet, and a no-op
# when `chromedriver` is already on the PATH.
set -euo pipefail
command -v chromedriver >/dev/null 2>&1 && exit 0
echo "installing chromium and chromium-driver for the web page tests" >&2
as_root=()
if [ "$(id -u)" != 0 ]; then as_root=(sudo); fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${as_root[@]}" apt-get update -q &&
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends chromium chromium-driver; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "could not install chromium and chromium-driver" >&2
  exit 1
fi
