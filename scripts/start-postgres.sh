#!/usr/bin/env bash
# Starts the local PostgreSQL cluster for berth's tests (Debian's postgresql package, which
# scripts/install-test-deps.sh installs) and makes sure role `berth` (password `berth`,
# LOGIN CREATEDB) and database `berth` exist. Idempotent: what is there already is kept.
# Prints the URL the tests take in BERTH_TEST_POSTGRES on standard output (messages go
# to standard error); when sourced, also exports it.
#
#   url=$(bash scripts/start-postgres.sh)      or      . scripts/start-postgres.sh
#
# Run as root (or with sudo on PATH).

_berth_start_postgres() {
    set -euo pipefail
    local say='start-postgres:'
    have_cmd() { command -v "$1" >/dev/null 2>&1; }
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        have_cmd sudo || { echo "$say run as root (or install sudo)" >&2; return 1; }
        sudo=(sudo)
    fi
    as_postgres() {
        if [ "$(id -u)" -eq 0 ]; then
            runuser -u postgres -- "$@"
        else
            sudo -u postgres "$@"
        fi
    }
    if ! have_cmd pg_lsclusters || ! have_cmd pg_ctlcluster; then
        echo "$say PostgreSQL is not installed: run scripts/install-test-deps.sh" >&2
        return 1
    fi

    # The newest installed major version, rather than a hard-coded one.
    local version
    version=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ] || [ ! -x "/usr/lib/postgresql/$version/bin/postgres" ]; then
        echo "$say no PostgreSQL server under /usr/lib/postgresql: run scripts/install-test-deps.sh" >&2
        return 1
    fi
    # The package's postinst normally creates cluster `main`; some images skip it.
    if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { found = 1 } END { exit !found }'; then
        echo "$say creating cluster $version/main" >&2
        "${sudo[@]}" pg_createcluster "$version" main >&2
    fi
    local status port
    status=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $4 }')
    port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $3 }')
    if [ "$status" != "online" ]; then
        echo "$say starting cluster $version/main on port $port" >&2
        "${sudo[@]}" pg_ctlcluster "$version" main start >&2
    fi

    local tries=0
    until pg_isready -q -h 127.0.0.1 -p "$port"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 60 ]; then
            echo "$say PostgreSQL $version did not answer on 127.0.0.1:$port within 30 s" >&2
            echo "$say see /var/log/postgresql/postgresql-$version-main.log" >&2
            return 1
        fi
        sleep 0.5
    done

    local psql=(psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres)
    # The role is (re)set each time, so a role left without a password or CREATEDB is fixed.
    if [ -z "$(as_postgres "${psql[@]}" -Atc "SELECT 1 FROM pg_roles WHERE rolname = 'berth'")" ]; then
        echo "$say creating role berth" >&2
        as_postgres "${psql[@]}" -c "CREATE ROLE berth LOGIN CREATEDB PASSWORD 'berth'" >&2
    else
        as_postgres "${psql[@]}" -c "ALTER ROLE berth LOGIN CREATEDB PASSWORD 'berth'" >&2
    fi
    if [ -z "$(as_postgres "${psql[@]}" -Atc "SELECT 1 FROM pg_database WHERE datname = 'berth'")" ]; then
        echo "$say creating database berth" >&2
        as_postgres "${psql[@]}" -c "CREATE DATABASE berth OWNER berth" >&2
    fi

    local url="postgres://berth:berth@127.0.0.1:$port/berth"
    # The tests sign in with the password over TCP: check that, not just the socket.
    if ! PGCONNECT_TIMEOUT=10 psql -X -q "$url" -Atc 'SELECT 1' >/dev/null; then
        echo "$say cannot sign in as berth at $url (see pg_hba.conf)" >&2
        return 1
    fi
    echo "$say PostgreSQL $version ready at $url" >&2
    BERTH_TEST_POSTGRES=$url
    echo "$url"
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # Sourced: run in a subshell (its `set -e` must not leak) and export the URL.
    if BERTH_TEST_POSTGRES=$(_berth_start_postgres); then
        export BERTH_TEST_POSTGRES
    else
        unset -f _berth_start_postgres
        return 1
    fi
    unset -f _berth_start_postgres
else
    _berth_start_postgres
fi
