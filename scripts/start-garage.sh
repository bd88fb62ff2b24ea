#!/usr/bin/env bash
# Starts Garage (a distributed S3-compatible store written in Rust) as a single local
# node for the tests, with one bucket and one key, and prints the environment that
# points S3 clients at it. Installs Garage with cargo when it is not on the PATH (about
# 11 minutes on 2 cores, once per machine). Idempotent: a node that already answers is
# reused.
#
#   eval "$(bash scripts/start-garage.sh)"          # exports AWS_* and BERTH_TEST_S3
#   eval "$(bash scripts/start-garage.sh --fresh)"  # the same, on an empty store
#
# Stop it with: kill "$(cat "$GARAGE_DIR/garage.pid")"
set -euo pipefail

GARAGE_DIR=${GARAGE_DIR:-/tmp/berth-garage}
GARAGE_VERSION=2.5.0
BUCKET=berth-test
# Fixed test credentials (key ids are GK + 24 hex digits, secrets 64 hex digits).
KEY_ID=GK0123456789abcdef01234567
SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
S3_PORT=3900

log() { echo "start-garage: $*" >&2; }

if ! command -v garage >/dev/null 2>&1; then
    log "installing garage $GARAGE_VERSION with cargo (once per machine)"
    cargo install garage --version "$GARAGE_VERSION" --locked --root /usr/local >&2
fi

if [ "${1:-}" = "--fresh" ]; then
    if [ -f "$GARAGE_DIR/garage.pid" ]; then
        pid=$(cat "$GARAGE_DIR/garage.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$GARAGE_DIR"
fi

mkdir -p "$GARAGE_DIR"
config="$GARAGE_DIR/garage.toml"
if [ ! -f "$config" ]; then
    cat >"$config" <<EOF
metadata_dir = "$GARAGE_DIR/meta"
data_dir = "$GARAGE_DIR/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:3901"
rpc_public_addr = "127.0.0.1:3901"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:3903"
admin_token = "$(head -c 32 /dev/urandom | base64)"
EOF
fi

g() { garage -c "$config" "$@"; }

running() {
    [ -f "$GARAGE_DIR/garage.pid" ] && kill -0 "$(cat "$GARAGE_DIR/garage.pid")" 2>/dev/null \
        && g status >/dev/null 2>&1
}

if ! running; then
    log "starting garage in $GARAGE_DIR"
    # setsid: the node outlives this script (and the shell that ran it).
    setsid garage -c "$config" server >"$GARAGE_DIR/garage.log" 2>&1 < /dev/null &
    echo $! >"$GARAGE_DIR/garage.pid"
    for _ in $(seq 1 100); do
        g status >/dev/null 2>&1 && break
        sleep 0.2
    done
    g status >/dev/null 2>&1 || { log "garage did not start; see $GARAGE_DIR/garage.log"; exit 1; }
fi

# A one-node layout, applied once.
# (Asked until the node answers: right after start it may not, and a failed `layout show`
# must not be taken for a layout that exists.)
layout=""
for _ in $(seq 1 100); do
    layout=$(g layout show 2>/dev/null) && break
    sleep 0.2
done
if printf '%s\n' "$layout" | grep -q "No nodes currently have a role"; then
    node=$(g node id -q | cut -d@ -f1)
    g layout assign -z dc1 -c 10G "$node" >&2
    g layout apply --version 1 >&2
fi
# A freshly applied layout takes a moment to be ready ("Layout not ready"): retry.
for attempt in $(seq 1 50); do
    if g bucket info "$BUCKET" >/dev/null 2>&1 || g bucket create "$BUCKET" >&2; then
        break
    fi
    [ "$attempt" -eq 50 ] && { log "could not create bucket $BUCKET"; exit 1; }
    sleep 0.2
done
g key info "$KEY_ID" >/dev/null 2>&1 || g key import --yes -n berth "$KEY_ID" "$SECRET" >&2
g bucket allow --read --write --owner "$BUCKET" --key "$KEY_ID" >/dev/null

# The S3 API answers once the layout is live.
for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && break
    sleep 0.2
done

cat <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_REGION=garage
export AWS_ACCESS_KEY_ID=$KEY_ID
export AWS_SECRET_ACCESS_KEY=$SECRET
export BERTH_TEST_S3=s3://$BUCKET
EOF
log "garage is serving s3://$BUCKET at http://127.0.0.1:$S3_PORT"
