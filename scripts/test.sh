#!/usr/bin/env bash
# Runs the whole test suite: unit tests, macro compile-fail tests, and the
# black-box tests that start the real server binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# moto, the local S3 server the S3 storage tests start.
scripts/setup-s3.sh
# One dev-profile build serves the binary and every test target. It must be
# --all-targets: with --bins alone cargo unifies features without the
# dev-dependencies and compiles DataFusion twice (once here, once for tests).
cargo build --workspace --all-targets
cargo test --workspace
openapi/test-clients.sh
