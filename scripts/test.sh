#!/usr/bin/env bash
# Sets up what composer needs and runs the whole test suite: formatting,
# lints, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
