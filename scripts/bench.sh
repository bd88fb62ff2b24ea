#!/usr/bin/env bash
# berth next to CNCF Distribution 2.8.2 and this machine's ceilings, in one command.
# Installs what is missing (docker-registry, nginx, taskset, htpasswd with apt-get; oha with
# cargo), builds the release binary, then runs bench/compare.py with the given options
# (`scripts/bench.sh --help` lists them). Prints a Markdown report and writes it to
# bench/results/latest.md. See bench/README.md.
#
# The S3, garbage-collection and PostgreSQL stages need Garage and PostgreSQL: unless
# BERTH_TEST_S3 / BERTH_TEST_POSTGRES already point at them, they are started with
# scripts/start-garage.sh and scripts/start-postgres.sh (PostgreSQL itself is installed
# by scripts/install-test-deps.sh when missing).
#
#   BERTH_BENCH_NO_BUILD=1   use target/release/berth as it is (no cargo build)
#   BERTH_SHARED_DIR=DIR     where bench/regbench.py lives (default: ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

case " $* " in
    *" -h "*|*" --help "*) exec python3 bench/compare.py --help ;;
esac

have_cmd() { command -v "$1" >/dev/null 2>&1; }

missing=()
have_cmd docker-registry || missing+=(docker-registry)
have_cmd nginx           || missing+=(nginx)
have_cmd taskset         || missing+=(util-linux)
[ -x /usr/bin/time ]     || missing+=(time)            # GNU time: peak RSS of the collectors
have_cmd python3         || missing+=(python3)
have_cmd sha256sum       || missing+=(coreutils)
have_cmd htpasswd        || missing+=(apache2-utils)   # bcrypt users for Distribution's auth rows
have_cmd skopeo          || missing+=(skopeo)          # pushes the image of the scanning rows
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        have_cmd sudo || { echo "bench.sh: missing ${missing[*]}; run as root or install sudo" >&2; exit 1; }
        sudo=(sudo -E)
    fi
    echo "bench.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-o DPkg::Lock::Timeout=300 -y -q)
    "${sudo[@]}" apt-get "${apt_opts[@]}" update
    # policy-rc.d may refuse to start the packaged services; the benchmark starts its own
    "${sudo[@]}" apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}"
fi

if ! have_cmd oha; then
    echo "bench.sh: installing oha (cargo install oha --locked)"
    cargo install oha --locked
fi

shared="${BERTH_SHARED_DIR:-../shared}"
if [ ! -f "$shared/bench/regbench.py" ]; then
    echo "bench.sh: $shared/bench/regbench.py not found (set BERTH_SHARED_DIR)" >&2
    exit 1
fi

if [ -z "${BERTH_BENCH_NO_BUILD:-}" ]; then
    cargo build --release --locked -p berth
fi

# Which stages run: all unless --skip-X, or only those named by --only-X.
stage_runs() {
    local x=$1 only=0 a
    for a in "${ARGS[@]}"; do
        case "$a" in
            --skip-"$x") return 1 ;;
            --only-*) only=1 ;;
        esac
    done
    [ "$only" -eq 0 ] && return 0
    for a in "${ARGS[@]}"; do [ "$a" = "--only-$x" ] && return 0; done
    return 1
}
ARGS=("$@")
need_s3=0; need_pg=0
if stage_runs s3; then need_s3=1; fi
if stage_runs gc; then need_s3=1; need_pg=1; fi   # berth's gc rows on S3 + PostgreSQL too
if stage_runs pg; then need_pg=1; fi
if [ "$need_s3" -eq 1 ] && [ -z "${BERTH_TEST_S3:-}" ]; then
    eval "$(bash scripts/start-garage.sh)"
fi
if [ "$need_pg" -eq 1 ] && [ -z "${BERTH_TEST_POSTGRES:-}" ]; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        bash scripts/install-test-deps.sh
    fi
    BERTH_TEST_POSTGRES=$(bash scripts/start-postgres.sh)
    export BERTH_TEST_POSTGRES
fi

# The exact command, for the report.
BERTH_BENCH_CMD="scripts/bench.sh"
if [ "$#" -gt 0 ]; then
    BERTH_BENCH_CMD+="$(printf ' %q' "$@")"
fi
if [ -n "${BERTH_BENCH_NO_BUILD:-}" ]; then
    BERTH_BENCH_CMD="BERTH_BENCH_NO_BUILD=1 $BERTH_BENCH_CMD"
fi
export BERTH_BENCH_CMD

exec python3 bench/compare.py "$@"
