#!/usr/bin/env bash
# Compares composer with the original Python Content Composer (0.1.2) on
# the same recipes against one local fake OpenAI-compatible server; see
# bench/compare.py. Installs content-composer and langchain-openai into
# .composer/bench-venv (once; quiet).
#
#   bash bench/compare.sh --smoke   # tiny recipes, one run, latency 0 (CI)
#   bash bench/compare.sh           # the full comparison; writes docs/benchmarks.md
#
# Our side runs $COMPOSER_BIN, else target/release/composer if present,
# else target/debug/composer.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.composer/bench-venv
if ! "$venv/bin/python" -c 'import content_composer, langchain_openai' 2>/dev/null; then
  mkdir -p .composer
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'content-composer==0.1.2' langchain-openai
fi
exec "$venv/bin/python" bench/compare.py "$@"
