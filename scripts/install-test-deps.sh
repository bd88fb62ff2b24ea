#!/usr/bin/env bash
# Installs the system packages that berth's tests need, and only those that
# are missing (Debian/Ubuntu, apt-get). Idempotent: when everything is present
# it changes nothing and does not touch the network.
#
#   skopeo          real-client tests (containers/image); brings
#                   /etc/containers/policy.json (containers-common)
#   docker.io       real-client tests: dockerd + containerd + runc (the tests
#                   start their own private dockerd; nothing is started here)
#   python3         shared/tools/mkimage.py (standard library only)
#   postgresql      the metadata store's PostgreSQL tests (scripts/start-postgres.sh
#                   starts the cluster and creates the role; nothing is started here)
#   nginx           the several-node tests put it in front of two berth nodes, as
#                   the README's set-up does (the tests start their own instance)
#   chromium        the web site's browser tests (headless, driven by Playwright from
#                   npm; fonts-dejavu-core so pages render text)
#   nodejs          runs those tests (the machine's Node.js 20 when present)
#   systemd         systemd-analyze checks deploy/berth.service (nothing is started)
#   zstd            the scanning fixtures write one zstd-compressed layer with it
#   curl, ca-certificates
#
# Usage: bash scripts/install-test-deps.sh      (as root, or with sudo on PATH)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

missing=()

have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

# The engine, not just a docker CLI: some machines ship a bare `docker` client.
have_cmd skopeo  || missing+=(skopeo)
have_cmd dockerd || missing+=(docker.io)
have_cmd python3 || missing+=(python3)
have_cmd curl    || missing+=(curl)
have_cmd nginx   || [ -x /usr/sbin/nginx ] || missing+=(nginx)
# The tests signal the real binary with /bin/kill (not the shell builtin `command -v` finds).
[ -x /bin/kill ] || [ -x /usr/bin/kill ] || missing+=(procps)
have_pkg ca-certificates || missing+=(ca-certificates)
have_cmd systemd-analyze || missing+=(systemd)
have_cmd zstd    || missing+=(zstd)
have_cmd chromium || missing+=(chromium fonts-dejavu-core)
have_cmd node    || missing+=(nodejs npm)
# A server, not just the client: pg_ctlcluster and some /usr/lib/postgresql/N/bin/postgres.
have_postgres() {
    have_cmd pg_ctlcluster || return 1
    for server in /usr/lib/postgresql/*/bin/postgres; do
        [ -x "$server" ] && return 0
    done
    return 1
}
have_postgres || missing+=(postgresql)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-test-deps: all present (skopeo, dockerd, python3, curl, ca-certificates, postgresql, nginx, chromium, node, systemd-analyze, zstd)"
    exit 0
fi

if ! have_cmd apt-get; then
    echo "install-test-deps: missing ${missing[*]} and no apt-get here; install them by hand" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if have_cmd sudo; then
        sudo=(sudo -E)
    else
        echo "install-test-deps: missing ${missing[*]}; run as root (or install sudo)" >&2
        exit 1
    fi
fi

echo "install-test-deps: installing ${missing[*]}"
apt_opts=(-o DPkg::Lock::Timeout=300 -y -q)
"${sudo[@]}" apt-get "${apt_opts[@]}" update
"${sudo[@]}" apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}"

# Check what the tests will look for.
for c in skopeo dockerd containerd runc python3 curl pg_ctlcluster psql chromium node npm systemd-analyze zstd; do
    if ! have_cmd "$c"; then
        echo "install-test-deps: $c still missing after apt-get install" >&2
        exit 1
    fi
done
if ! have_postgres; then
    echo "install-test-deps: no PostgreSQL server under /usr/lib/postgresql after apt-get install" >&2
    exit 1
fi
echo "install-test-deps: done"
