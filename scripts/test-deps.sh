#!/usr/bin/env bash
# Run by scripts/test.sh: installs what only the tests need, with Debian's
# packages: the headless Chromium and its WebDriver that the web page's
# end-to-end tests drive (`chromium`, `chromium-driver`), and the
# PostgreSQL and Redis servers the scale tests start private instances of
# (`postgresql`, `redis-server`; the tests never use the cluster or service
# the packages may start on the default ports). One quiet apt-get for
# whatever is missing, and a no-op when everything is already there.
set -euo pipefail

# initdb, pg_ctl and psql: Debian keeps the server's programs in
# /usr/lib/postgresql/VERSION/bin, off the PATH, so look there too.
has_postgres() {
  local bin
  for bin in /usr/lib/postgresql/*/bin; do
    [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && [ -x "$bin/psql" ] && return 0
  done
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 &&
    command -v psql >/dev/null 2>&1
}

packages=()
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium chromium-driver)
has_postgres || packages+=(postgresql)
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
[ "${#packages[@]}" -eq 0 ] && exit 0

echo "installing ${packages[*]} for the tests" >&2
as_root=()
if [ "$(id -u)" != 0 ]; then as_root=(sudo); fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${as_root[@]}" apt-get update -q &&
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${packages[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "could not install ${packages[*]}" >&2
  exit 1
fi
