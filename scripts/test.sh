#!/usr/bin/env bash
# Sets up what composer needs and runs the whole test suite: formatting,
# lints, the plugins' own tests, and the host's unit and integration tests
# (which load the plugins built here), then the comparison's smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo fmt --all -- --check
rustfmt --edition 2021 --check plugins/*/src/*.rs
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --manifest-path plugins/Cargo.toml --all-targets --locked -- -D warnings
cargo test --manifest-path plugins/Cargo.toml --locked
cargo test --workspace --locked
# composer and the original Content Composer on the same tiny recipes
# (installs content-composer into .composer/bench-venv once).
bash bench/compare.sh --smoke
