#!/usr/bin/env bash
# Soak and load test: berth with auth on under 500 concurrent keep-alive connections for
# 10 minutes (pulls of multi-layer images, pushes, /token with passwords and access tokens,
# catalog and tag pages), every response verified; reports p50/p99 per route, errors,
# deliberate limits, the server's RSS over time and open file descriptors. Builds the
# release binary, then runs bench/soak.py with the given options (`scripts/soak.sh --help`
# lists them). Prints a Markdown report and writes it to bench/results/soak-latest.md.
# Exits 1 on any error or if RSS keeps growing. See bench/README.md.
#
#   BERTH_SOAK_NO_BUILD=1   no cargo build: use the binary as it is
#   BERTH_BIN=PATH          the berth binary to soak (default target/release/berth)
#   BERTH_SHARED_DIR=DIR    where tools/mkimage.py lives (default: ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

case " $* " in
    *" -h "*|*" --help "*) exec python3 bench/soak.py --help ;;
esac

if ! command -v python3 >/dev/null 2>&1; then
    echo "soak.sh: python3 is needed (apt-get install python3)" >&2
    exit 1
fi

shared="${BERTH_SHARED_DIR:-../shared}"
if [ ! -f "$shared/tools/mkimage.py" ]; then
    echo "soak.sh: $shared/tools/mkimage.py not found (set BERTH_SHARED_DIR)" >&2
    exit 1
fi
export BERTH_SHARED_DIR="$shared"

# With --url the server runs already: nothing to build or start.
case " $* " in
    *" --url "*|*" --url="*) exec python3 bench/soak.py "$@" ;;
esac

if [ -z "${BERTH_SOAK_NO_BUILD:-}" ]; then
    cargo build --release --locked -p berth
fi

# An explicit --berth wins over BERTH_BIN.
case " $* " in
    *" --berth "*|*" --berth="*) exec python3 bench/soak.py "$@" ;;
esac

bin="${BERTH_BIN:-target/release/berth}"
if [ ! -x "$bin" ]; then
    echo "soak.sh: $bin is not an executable (build it, or set BERTH_BIN)" >&2
    exit 1
fi

exec python3 bench/soak.py --berth "$bin" "$@"
