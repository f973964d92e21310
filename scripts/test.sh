#!/usr/bin/env bash
# Runs the workspace tests against a private, throwaway PostgreSQL cluster.
#
# When the PostgreSQL server binaries are missing, the script installs Debian's
# postgresql packages, which needs root. It creates a cluster in a fresh temporary
# directory and starts it on a free port on 127.0.0.1. Then it runs
# `cargo test --workspace --locked` with the script's arguments appended, for
# example `scripts/test.sh -p unibench-store`.
# On exit, including Ctrl-C and SIGTERM, it stops the cluster and deletes the
# directory. The exit code is cargo's, or non-zero if the setup failed.
#
# Environment set for the tests:
#   UNIBENCH_TEST_PG_URL           postgres://postgres@127.0.0.1:PORT/postgres
#                                  (superuser, trust authentication)
#   UNIBENCH_TEST_PG_PASSWORD_URL  postgres://unibench_pw@127.0.0.1:PORT/postgres
#                                  (scram-sha-256 role; tests add the password
#                                  unibench-test-secret themselves)
#   UNIBENCH_TEST_PG_SOCKET_DIR    the directory of the server's Unix socket
#                                  (trusted like the TCP address)
#   PATH                           starts with the PostgreSQL bin directory, so
#                                  psql and pgbench match the server version
# PGHOST, PGHOSTADDR, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and PGSERVICE are
# unset. CARGO_TARGET_DIR is passed to cargo unchanged when set.

set -euo pipefail

readonly PASSWORD_ROLE=unibench_pw
readonly PASSWORD_ROLE_SECRET=unibench-test-secret
readonly READY_TIMEOUT_SECONDS=30
readonly START_ATTEMPTS=3

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT

PG_BIN=""          # directory containing initdb, pg_ctl, pg_isready and psql
PG_OS_USER=""      # system user that owns the cluster when the script runs as root
CLUSTER_DIR=""     # temporary directory: data/, postgres.log and the Unix socket
PG_PORT=""

log() {
    echo "test.sh: $*" >&2
}

fail() {
    log "error: $*"
    exit 1
}

# Runs a PostgreSQL server command as the cluster owner. initdb and postgres
# reject root, so as root the command runs as PG_OS_USER. It runs from inside the
# cluster directory because the owner may not be able to read the caller's one.
run_as_owner() {
    if [[ -n "$PG_OS_USER" ]]; then
        (cd "$CLUSTER_DIR" && runuser -u "$PG_OS_USER" -- "$@")
    else
        "$@"
    fi
}

# Prints the bin directory of the newest PostgreSQL under /usr/lib/postgresql,
# or else the one that provides initdb on PATH. Prints nothing if neither exists.
find_pg_bin() {
    local dir
    # An unmatched glob stays literal and fails the -x test below.
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return
        fi
    done

    local initdb_path
    if initdb_path="$(command -v initdb)" && command -v pg_ctl >/dev/null; then
        # Resolve symlinks such as /usr/local/bin/initdb so that pg_isready and
        # the other tools come from the same installation.
        dirname "$(readlink -f "$initdb_path")"
    fi
}

install_postgres() {
    if [[ "$(id -u)" -ne 0 ]]; then
        fail "PostgreSQL server binaries (initdb, pg_ctl) not found under" \
            "/usr/lib/postgresql/*/bin or on PATH. Install them as root with" \
            "'apt-get install postgresql postgresql-contrib', or run this script as root."
    fi
    log "PostgreSQL server binaries not found; installing Debian's postgresql packages"
    log "running: apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update
    log "running: apt-get install -y postgresql postgresql-contrib"
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql postgresql-contrib
}

locate_or_install_postgres() {
    PG_BIN="$(find_pg_bin)"
    if [[ -z "$PG_BIN" ]]; then
        install_postgres
        PG_BIN="$(find_pg_bin)"
        [[ -n "$PG_BIN" ]] || fail "initdb still not found after installing postgresql"
    fi
    local tool
    for tool in initdb pg_ctl pg_isready psql; do
        [[ -x "$PG_BIN/$tool" ]] || fail "$tool missing from $PG_BIN"
    done
    log "using PostgreSQL from $PG_BIN ($("$PG_BIN/postgres" --version 2>/dev/null || echo 'version unknown'))"
}

# Picks the system user that owns the cluster when running as root: the Debian
# package's postgres user, or else a system user unibench-pg, created if needed.
choose_owner_user() {
    if [[ "$(id -u)" -ne 0 ]]; then
        return
    fi
    if id -u postgres >/dev/null 2>&1; then
        PG_OS_USER=postgres
    else
        PG_OS_USER=unibench-pg
        if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
            log "creating system user $PG_OS_USER to own the test cluster"
            useradd --system --user-group --no-create-home \
                --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_OS_USER"
        fi
    fi
    log "running as root; the cluster runs as system user $PG_OS_USER"
}

create_cluster_dir() {
    CLUSTER_DIR="$(mktemp -d "${TMPDIR:-/tmp}/unibench-pg.XXXXXX")"
    log "cluster directory: $CLUSTER_DIR"
    if [[ -n "$PG_OS_USER" ]]; then
        chown "$PG_OS_USER:" "$CLUSTER_DIR"
        run_as_owner test -w "$CLUSTER_DIR" ||
            fail "user $PG_OS_USER cannot write to $CLUSTER_DIR; set TMPDIR to a" \
                "directory that every user can traverse, such as /tmp"
    fi
}

# Asks the kernel for a free TCP port on 127.0.0.1 by binding port 0. Without
# python3, probes random ports in the dynamic range until a connection is refused.
# Another process may take the port before postgres binds it, so start_cluster
# retries with a new port.
pick_free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
        return
    fi

    local port
    for _ in $(seq 1 100); do
        port=$((49152 + RANDOM % 16384))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    fail "no free TCP port found on 127.0.0.1 after 100 probes"
}

# Writes the server settings and the authentication rules. The role unibench_pw
# must pass scram-sha-256 over TCP, while every other role, postgres included,
# is trusted from 127.0.0.1 and over the Unix socket.
configure_cluster() {
    local data_dir="$CLUSTER_DIR/data"
    run_as_owner tee -a "$data_dir/postgresql.conf" >/dev/null <<EOF

# Settings for a throwaway test cluster: durability off for speed.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$CLUSTER_DIR'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
EOF
    run_as_owner tee "$data_dir/pg_hba.conf" >/dev/null <<EOF
# TYPE  DATABASE  USER            ADDRESS        METHOD
local   all       all                            trust
host    all       $PASSWORD_ROLE  127.0.0.1/32   scram-sha-256
host    all       all             127.0.0.1/32   trust
EOF
}

init_cluster() {
    log "creating cluster with initdb"
    run_as_owner "$PG_BIN/initdb" --pgdata="$CLUSTER_DIR/data" --auth=trust \
        --username=postgres --encoding=UTF8 --locale=C --no-sync >"$CLUSTER_DIR/initdb.log" 2>&1 ||
        {
            cat "$CLUSTER_DIR/initdb.log" >&2
            fail "initdb failed"
        }
    configure_cluster
}

# Polls pg_isready over TCP until the server accepts connections or
# READY_TIMEOUT_SECONDS pass.
wait_until_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
    while ((SECONDS < deadline)); do
        if "$PG_BIN/pg_isready" --quiet --host=127.0.0.1 --port="$PG_PORT" \
            --username=postgres --dbname=postgres --timeout=2; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

server_is_running() {
    run_as_owner "$PG_BIN/pg_ctl" status --pgdata="$CLUSTER_DIR/data" >/dev/null 2>&1
}

# Starts the server on a free port, retrying with a new port when the start
# fails, for example because another process took the chosen port first.
start_cluster() {
    local attempt
    for attempt in $(seq 1 "$START_ATTEMPTS"); do
        PG_PORT="$(pick_free_port)"
        log "starting postgres on 127.0.0.1:$PG_PORT (attempt $attempt of $START_ATTEMPTS)"
        if run_as_owner "$PG_BIN/pg_ctl" start --pgdata="$CLUSTER_DIR/data" \
            --log="$CLUSTER_DIR/postgres.log" --options="-p $PG_PORT" \
            --wait --timeout="$READY_TIMEOUT_SECONDS" >/dev/null &&
            wait_until_ready; then
            log "postgres is ready"
            return 0
        fi
        if server_is_running; then
            run_as_owner "$PG_BIN/pg_ctl" stop --pgdata="$CLUSTER_DIR/data" --mode=immediate >/dev/null || true
        fi
    done
    fail "postgres failed to start on 127.0.0.1 in $START_ATTEMPTS attempts" \
        "(each waits up to ${READY_TIMEOUT_SECONDS} s for readiness); see the server log below"
}

create_password_role() {
    log "creating role $PASSWORD_ROLE with scram-sha-256 password authentication"
    "$PG_BIN/psql" --no-psqlrc --quiet --set=ON_ERROR_STOP=1 \
        "postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
        --command="CREATE ROLE $PASSWORD_ROLE LOGIN CREATEDB PASSWORD '$PASSWORD_ROLE_SECRET'"
}

print_server_log() {
    local log_file="$CLUSTER_DIR/postgres.log"
    if [[ -s "$log_file" ]]; then
        log "postgres log ($log_file), last 500 lines:"
        tail -n 500 "$log_file" >&2
    fi
}

# Stops the server and deletes the cluster directory. As the EXIT trap it runs
# on every exit except SIGKILL. A non-zero status prints the server log first.
cleanup() {
    local status=$?
    trap - EXIT
    if [[ -n "$CLUSTER_DIR" && -d "$CLUSTER_DIR" ]]; then
        if ((status != 0)); then
            print_server_log
        fi
        if [[ -f "$CLUSTER_DIR/data/postmaster.pid" ]]; then
            log "stopping postgres"
            run_as_owner "$PG_BIN/pg_ctl" stop --pgdata="$CLUSTER_DIR/data" \
                --mode=immediate >/dev/null 2>&1 ||
                log "warning: pg_ctl stop failed; check for a leftover postgres process"
        fi
        rm -rf -- "$CLUSTER_DIR"
        log "deleted $CLUSTER_DIR"
    fi
    exit "$status"
}

run_cargo_tests() {
    export UNIBENCH_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    export UNIBENCH_TEST_PG_PASSWORD_URL="postgres://$PASSWORD_ROLE@127.0.0.1:$PG_PORT/postgres"
    export UNIBENCH_TEST_PG_SOCKET_DIR="$CLUSTER_DIR"
    export PATH="$PG_BIN:$PATH"
    log "UNIBENCH_TEST_PG_URL=$UNIBENCH_TEST_PG_URL"
    log "UNIBENCH_TEST_PG_PASSWORD_URL=$UNIBENCH_TEST_PG_PASSWORD_URL"
    log "running: cargo test --workspace --locked${*:+ $*}"
    cargo test --workspace --locked "$@"
}

# The browser test (crates/cli/tests/browser.rs) drives Debian's headless Chromium.
install_chromium() {
    if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
        return
    fi
    if [[ "$(id -u)" -ne 0 ]]; then
        fail "chromium and chromedriver not found; install them as root with 'apt-get install chromium chromium-driver'"
    fi
    log "installing Debian's chromium and chromium-driver for the browser test"
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
}

main() {
    # libpq reads these variables. Clearing them keeps the caller's environment
    # from redirecting the tests' connections or supplying a password.
    unset PGHOST PGHOSTADDR PGPORT PGUSER PGPASSWORD PGDATABASE PGSERVICE

    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    locate_or_install_postgres
    install_chromium
    choose_owner_user
    create_cluster_dir
    init_cluster
    start_cluster
    create_password_role

    cd "$REPO_ROOT"
    local status=0
    run_cargo_tests "$@" || status=$?
    if ((status != 0)); then
        log "cargo test failed with exit code $status"
    fi
    exit "$status"
}

main "$@"
