#!/usr/bin/env bash
# Sets up what composer needs and runs the flagship recipe offline (mock
# provider, no keys, no network). Extra arguments go to `composer run`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo run --quiet --release -p composer -- run recipes/article_studio.yaml "$@"
