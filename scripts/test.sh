#!/usr/bin/env bash
# Every berth test, from a fresh Debian machine: installs what the tests need (only what
# is missing), then checks formatting and lints, runs the whole test suite, and fuzzes
# the parsers for a few minutes.
# The tests start their own servers (berth in-process or as a binary, a private dockerd);
# Garage (S3) and PostgreSQL are started here: PostgreSQL is the machine's cluster (the
# tests each make and drop a scratch database in it; a BERTH_TEST_POSTGRES set beforehand
# names another server to use instead).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
# Playwright (npm, no browser download: it drives Debian's chromium) for the web tests.
if [ ! -d crates/berth/tests/browser/node_modules/playwright-core ]; then
    (cd crates/berth/tests/browser && npm ci --no-audit --no-fund)
fi

if [ ! -f ../shared/tools/mkimage.py ] && [ -z "${BERTH_SHARED_DIR:-}" ]; then
    echo "test.sh: ../shared/tools/mkimage.py not found (set BERTH_SHARED_DIR)" >&2
    exit 1
fi

# A real S3-compatible store (Garage, built once per machine) on an empty bucket.
eval "$(bash scripts/start-garage.sh --fresh)"
if [ -z "${BERTH_TEST_POSTGRES:-}" ]; then
    BERTH_TEST_POSTGRES=$(bash scripts/start-postgres.sh)
fi
export BERTH_TEST_POSTGRES

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The protocol suites again with auth on: every request carries the administrator's
# credentials (the conformance suite's OCI_USERNAME/OCI_PASSWORD mode), and oci-client
# goes through the token flow.
BERTH_TEST_AUTH=1 cargo test --locked -p berth --test it -- \
    blobs:: uploads:: manifests:: errors:: oci_client::
# The protocol suites again as several nodes run them: blobs in S3 (Garage), metadata in
# PostgreSQL (a scratch database per server).
BERTH_TEST_STORAGE=s3 BERTH_TEST_DATABASE=postgres cargo test --locked -p berth --test it -- \
    blobs:: uploads:: manifests:: errors:: oci_client:: gc:: tag_policies:: web:: mirror:: \
    scanning::scans_read_layers_from_the_configured_stores
# Every parser that reads client bytes, fuzzed for a short while (a smoke run; `scripts/
# fuzz.sh 600` for a long one). Needs cargo-fuzz, which it installs when missing.
bash scripts/fuzz.sh 20
