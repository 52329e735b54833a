#!/usr/bin/env bash
# Runs the whole test suite: unit tests, macro compile-fail tests, and the
# black-box tests that start the real server binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# moto, the local S3 server the S3 storage tests start.
scripts/setup-s3.sh
# One dev-profile build serves the binary and every test target.
cargo build --workspace --bins
cargo test --workspace
openapi/test-clients.sh
