#!/usr/bin/env bash
# Sets up what composer and its tests need and runs the whole test suite:
# formatting, lints, the plugins' own tests, the host's unit and
# integration tests (which load the plugins built here and drive the web
# page in a headless Chromium), then the comparison's smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Headless Chromium for the web page's end-to-end tests (tests/all/web).
bash scripts/test-deps.sh
cargo fmt --all -- --check
rustfmt --edition 2021 --check plugins/*/src/*.rs
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --manifest-path plugins/Cargo.toml --all-targets --locked -- -D warnings
cargo test --manifest-path plugins/Cargo.toml --locked
cargo test --workspace --locked
# composer and the original Content Composer on the same tiny recipes
# (installs content-composer into .composer/bench-venv once).
bash bench/compare.sh --smoke
