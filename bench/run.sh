#!/usr/bin/env bash
# Compares unibench with pgbench on this machine and reports the figures.
#
# The script builds unibench with `cargo build --release`. It creates a private
# PostgreSQL cluster on a free port on 127.0.0.1 in a temporary directory and
# loads it with `pgbench -i -s 10`. Then bench/measure.py alternates pgbench and
# `unibench run`, measures memory, STOP latency and store statements, prints a
# table and writes the figures as JSON. A missed goal does not change the exit
# code: the script reports and never asserts.
#
# On exit, including Ctrl-C and SIGTERM, it kills every process it started,
# stops the cluster and deletes the temporary directory. Every process it
# starts runs under a timeout. See bench/README.md for the settings below.
#
#   BENCH_DURATION            measured seconds per run (default 15)
#   BENCH_WARMUP              uncounted warmup seconds per run (default 3)
#   BENCH_PAIRS               pgbench/unibench pairs per connection count (default 5)
#   BENCH_CONNECTIONS         connection counts (default "8 32 128")
#   BENCH_MEMORY_CONNECTIONS  connections of the one-worker memory run (default 1000)
#   BENCH_MEMORY_DURATION     measured seconds of each memory run (default 15)
#   BENCH_STOP_RUNS           STOP-latency runs (default 10)
#   BENCH_ONLY                measurements to run (default "throughput memory stop control")
#   BENCH_RESULTS             JSON output (default bench/results/latest.json)
#   BENCH_PG_BIN              PostgreSQL bin directory (default: newest /usr/lib/postgresql/*/bin)
#   BENCH_KEEP_TMP            1 keeps the temporary directory (logs, templates) after exit
#   BENCH_BUILD_TIMEOUT       seconds allowed for cargo build (default 3600)
#   BENCH_TIMEOUT             seconds allowed for the measurements (default: computed)
#   CARGO_TARGET_DIR          cargo's target directory (default: target/ in the repository)

set -euo pipefail

readonly READY_TIMEOUT_SECONDS=60
readonly START_ATTEMPTS=3
readonly SHORT_TIMEOUT_SECONDS=120
readonly LOAD_TIMEOUT_SECONDS=1800
readonly SCALE=10
readonly STORE_DATABASE=unibench_store

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
readonly BENCH_DIR REPO_ROOT

DURATION="${BENCH_DURATION:-15}"
WARMUP="${BENCH_WARMUP:-3}"
PAIRS="${BENCH_PAIRS:-5}"
CONNECTIONS="${BENCH_CONNECTIONS:-8 32 128}"
MEMORY_CONNECTIONS="${BENCH_MEMORY_CONNECTIONS:-1000}"
MEMORY_DURATION="${BENCH_MEMORY_DURATION:-15}"
STOP_RUNS="${BENCH_STOP_RUNS:-10}"
ONLY="${BENCH_ONLY:-throughput memory stop control}"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/results/latest.json}"
KEEP_TMP="${BENCH_KEEP_TMP:-0}"
BUILD_TIMEOUT="${BENCH_BUILD_TIMEOUT:-3600}"

PG_BIN=""          # directory with initdb, pg_ctl, psql, pgbench
PG_OS_USER=""      # system user that owns the cluster when the script runs as root
WORK_DIR=""        # temporary directory: pg/ (cluster), home/ (UNIBENCH_HOME), logs
PG_DIR=""
PG_PORT=""
UNIBENCH_BIN=""
CHILD_PID=""       # the bounded command running now, killed by cleanup

log() {
    echo "run.sh: $*" >&2
}

fail() {
    log "error: $*"
    exit 1
}

require_integer() {
    local name="$1" value="$2" minimum="$3"
    if [[ ! "$value" =~ ^[0-9]+$ ]] || ((value < minimum)); then
        fail "$name must be an integer of at least $minimum, got '$value'"
    fi
}

check_settings() {
    require_integer BENCH_DURATION "$DURATION" 2
    require_integer BENCH_WARMUP "$WARMUP" 0
    require_integer BENCH_PAIRS "$PAIRS" 1
    require_integer BENCH_MEMORY_CONNECTIONS "$MEMORY_CONNECTIONS" 2
    require_integer BENCH_MEMORY_DURATION "$MEMORY_DURATION" 2
    require_integer BENCH_STOP_RUNS "$STOP_RUNS" 1
    require_integer BENCH_BUILD_TIMEOUT "$BUILD_TIMEOUT" 1
    local count
    for count in $CONNECTIONS; do
        require_integer "a count in BENCH_CONNECTIONS" "$count" 1
    done
    local item
    for item in $ONLY; do
        [[ "$item" =~ ^(throughput|memory|stop|control)$ ]] ||
            fail "BENCH_ONLY lists '$item'; expected throughput, memory, stop or control"
    done
    [[ "$RESULTS" = /* ]] || RESULTS="$PWD/$RESULTS"
    command -v python3 >/dev/null || fail "python3 not found on PATH"
    command -v cargo >/dev/null || fail "cargo not found on PATH"
}

# Runs a command under `timeout` in the background and waits for it, so that a
# signal to this script interrupts the wait and cleanup can kill the command.
run_bounded() {
    local seconds="$1"
    shift
    timeout --kill-after=15 "$seconds" "$@" &
    CHILD_PID=$!
    local status=0
    wait "$CHILD_PID" || status=$?
    CHILD_PID=""
    if ((status == 124)); then
        log "timed out after $seconds s: $*"
    fi
    return "$status"
}

# Runs a PostgreSQL server command as the cluster owner: initdb and postgres
# reject root. It runs from inside the cluster directory, which the owner can read.
run_as_owner() {
    local seconds="$1"
    shift
    if [[ -z "$PG_OS_USER" ]]; then
        run_bounded "$seconds" "$@"
        return
    fi
    local previous="$PWD" status=0
    cd "$PG_DIR"
    run_bounded "$seconds" runuser -u "$PG_OS_USER" -- "$@" || status=$?
    cd "$previous"
    return "$status"
}

psql_run() {
    local database="$1"
    shift
    run_bounded "$SHORT_TIMEOUT_SECONDS" "$PG_BIN/psql" --no-psqlrc --quiet --set=ON_ERROR_STOP=1 \
        "postgres://postgres@127.0.0.1:$PG_PORT/$database" "$@"
}

# Prints the bin directory of the newest PostgreSQL under /usr/lib/postgresql
# that has pgbench, or else the one that provides initdb on PATH.
find_pg_bin() {
    if [[ -n "${BENCH_PG_BIN:-}" ]]; then
        echo "$BENCH_PG_BIN"
        return
    fi
    local dir
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pgbench" ]]; then
            echo "$dir"
            return
        fi
    done
    local initdb_path
    if initdb_path="$(command -v initdb)"; then
        dirname "$(readlink -f "$initdb_path")"
    fi
}

locate_postgres() {
    PG_BIN="$(find_pg_bin)"
    [[ -n "$PG_BIN" ]] || fail "PostgreSQL not found under /usr/lib/postgresql/*/bin or on PATH;" \
        "install it (Debian: apt-get install postgresql postgresql-contrib) or set BENCH_PG_BIN"
    local tool
    for tool in initdb pg_ctl pg_isready psql pgbench postgres; do
        [[ -x "$PG_BIN/$tool" ]] || fail "$tool missing from $PG_BIN"
    done
    PG_VERSION="$("$PG_BIN/postgres" --version)"
    log "using $PG_VERSION from $PG_BIN"
    if [[ "$(id -u)" -eq 0 ]]; then
        id -u postgres >/dev/null 2>&1 || fail "running as root needs a 'postgres' system user to own the cluster"
        PG_OS_USER=postgres
    fi
}

build_unibench() {
    local target_dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
    [[ "$target_dir" = /* ]] || target_dir="$REPO_ROOT/$target_dir"
    UNIBENCH_BIN="$target_dir/release/unibench"
    log "building unibench: cargo build --release (target directory $target_dir)"
    (cd "$REPO_ROOT" && run_bounded "$BUILD_TIMEOUT" cargo build --release) || fail "cargo build --release failed"
    [[ -x "$UNIBENCH_BIN" ]] || fail "$UNIBENCH_BIN not found after the build"
}

# Raises the soft limit on open files, because a worker with 1,000 connections
# has over 1,000 sockets open and the usual default soft limit is 1,024.
raise_open_files_limit() {
    local needed=$((MEMORY_CONNECTIONS + 512))
    local soft hard
    soft="$(ulimit -Sn)"
    hard="$(ulimit -Hn)"
    if [[ "$soft" != unlimited ]] && ((soft < needed)); then
        if [[ "$hard" = unlimited ]] || ((hard >= needed)); then
            ulimit -Sn "$needed"
            log "raised the open-files soft limit from $soft to $needed"
        else
            log "warning: open-files hard limit $hard is below $needed; the memory run may fail"
        fi
    fi
}

pick_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

create_cluster() {
    WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/unibench-bench.XXXXXX")"
    # The cluster owner must traverse this directory to reach pg/.
    chmod 755 "$WORK_DIR"
    PG_DIR="$WORK_DIR/pg"
    mkdir -p "$PG_DIR" "$WORK_DIR/home"
    if [[ -n "$PG_OS_USER" ]]; then
        chown "$PG_OS_USER:" "$PG_DIR"
    fi
    log "temporary directory: $WORK_DIR"

    run_as_owner "$SHORT_TIMEOUT_SECONDS" "$PG_BIN/initdb" --pgdata="$PG_DIR/data" --auth=trust \
        --username=postgres --encoding=UTF8 --locale=C --no-sync >"$WORK_DIR/initdb.log" 2>&1 ||
        {
            cat "$WORK_DIR/initdb.log" >&2
            fail "initdb failed"
        }
    # The benchmark measures the client, so durability is off. 1,100
    # connections leave room for the 1,000-connection worker and the store.
    # Appending keeps the file's owner, and root may write to the data directory.
    cat >>"$PG_DIR/data/postgresql.conf" <<EOF

# unibench benchmark cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_DIR'
max_connections = 1100
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
shared_preload_libraries = 'pg_stat_statements'
# The client's port lets measure.py tell which process sent a logged statement.
log_line_prefix = '%m [%p] %r '
EOF
}

start_cluster() {
    local attempt
    for attempt in $(seq 1 "$START_ATTEMPTS"); do
        PG_PORT="$(pick_free_port)"
        log "starting postgres on 127.0.0.1:$PG_PORT (attempt $attempt of $START_ATTEMPTS)"
        if run_as_owner $((READY_TIMEOUT_SECONDS + 15)) "$PG_BIN/pg_ctl" start --pgdata="$PG_DIR/data" \
            --log="$PG_DIR/postgres.log" --options="-p $PG_PORT" --wait --timeout="$READY_TIMEOUT_SECONDS" \
            >/dev/null; then
            return 0
        fi
        stop_cluster
    done
    tail -n 50 "$PG_DIR/postgres.log" >&2 || true
    fail "postgres failed to start in $START_ATTEMPTS attempts"
}

stop_cluster() {
    if [[ -n "$PG_DIR" && -f "$PG_DIR/data/postmaster.pid" ]]; then
        log "stopping postgres"
        run_as_owner 60 "$PG_BIN/pg_ctl" stop --pgdata="$PG_DIR/data" --mode=fast --wait --timeout=30 \
            >/dev/null 2>&1 ||
            run_as_owner 60 "$PG_BIN/pg_ctl" stop --pgdata="$PG_DIR/data" --mode=immediate >/dev/null 2>&1 ||
            log "warning: pg_ctl stop failed; check for a leftover postgres process of $PG_DIR/data"
    fi
}

load_data() {
    psql_run postgres --command="CREATE DATABASE bench" --command="CREATE DATABASE $STORE_DATABASE"
    log "loading data: pgbench -i -s $SCALE"
    run_bounded "$LOAD_TIMEOUT_SECONDS" "$PG_BIN/pgbench" --host=127.0.0.1 --port="$PG_PORT" --username=postgres \
        --initialize --scale="$SCALE" --quiet bench >"$WORK_DIR/pgbench-init.log" 2>&1 ||
        {
            tail -n 20 "$WORK_DIR/pgbench-init.log" >&2
            fail "pgbench -i failed"
        }
    psql_run "$STORE_DATABASE" --command="CREATE EXTENSION pg_stat_statements"
    run_bounded "$SHORT_TIMEOUT_SECONDS" "$UNIBENCH_BIN" schema apply \
        --store "postgres://postgres@127.0.0.1:$PG_PORT/$STORE_DATABASE" >"$WORK_DIR/schema-apply.log" 2>&1 ||
        {
            cat "$WORK_DIR/schema-apply.log" >&2
            fail "unibench schema apply on the PostgreSQL store failed"
        }
    cat >"$WORK_DIR/home/connections.toml" <<EOF
[connections.bench-pg]
kind = "postgres"
host = "127.0.0.1"
port = $PG_PORT
user = "postgres"
database = "bench"
EOF
}

unibench_commit() {
    local commit
    commit="$(timeout 30 git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null)" || {
        echo unknown
        return
    }
    if [[ -n "$(timeout 30 git -C "$REPO_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
        commit="$commit with uncommitted changes"
    fi
    echo "$commit"
}

run_measurements() {
    local connection_count
    connection_count="$(wc -w <<<"$CONNECTIONS")"
    # The planned time of the selected measurements, and a generous bound:
    # three times that plus 15 minutes.
    local planned=0
    if [[ " $ONLY " = *" throughput "* ]]; then
        planned=$((planned + PAIRS * connection_count * (2 * (DURATION + WARMUP) + 30)))
        planned=$((planned + 2 * PAIRS * (DURATION + WARMUP + 20)))
    fi
    if [[ " $ONLY " = *" memory "* ]]; then
        planned=$((planned + 2 * (MEMORY_DURATION + WARMUP + 30)))
    fi
    if [[ " $ONLY " = *" stop "* ]]; then
        planned=$((planned + STOP_RUNS * (WARMUP + 10)))
    fi
    if [[ " $ONLY " = *" control "* ]]; then
        planned=$((planned + DURATION + WARMUP + 20))
    fi
    local limit="${BENCH_TIMEOUT:-$((3 * planned + 900))}"
    require_integer BENCH_TIMEOUT "$limit" 1
    log "measuring (about $((planned / 60)) minutes; killed after $limit s)"
    # shellcheck disable=SC2086 # CONNECTIONS and ONLY are lists of words.
    run_bounded "$limit" python3 -B "$BENCH_DIR/measure.py" \
        --unibench "$UNIBENCH_BIN" --pgbench "$PG_BIN/pgbench" --psql "$PG_BIN/psql" \
        --port "$PG_PORT" --pgdata "$PG_DIR/data" --pglog "$PG_DIR/postgres.log" --workdir "$WORK_DIR" --results "$RESULTS" \
        --scale "$SCALE" --duration "$DURATION" --warmup "$WARMUP" --pairs "$PAIRS" \
        --connections $CONNECTIONS --memory-connections "$MEMORY_CONNECTIONS" \
        --memory-duration "$MEMORY_DURATION" --stop-runs "$STOP_RUNS" --store-database "$STORE_DATABASE" \
        --postgres-version "$PG_VERSION" --commit "$(unibench_commit)" --only $ONLY
}

# Kills what measure.py started if it could not do so itself: every process in
# the process groups it recorded whose executable is unibench or pgbench.
kill_leftover_groups() {
    local pgid_file="$WORK_DIR/pgids"
    [[ -f "$pgid_file" ]] || return 0
    local pgid pid exe
    while read -r pgid; do
        for pid in $(pgrep -g "$pgid" 2>/dev/null || true); do
            exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
            if [[ "$exe" == "$UNIBENCH_BIN" || "$exe" == "$(readlink -f "$PG_BIN/pgbench")" ]]; then
                log "killing leftover process $pid ($exe)"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done
    done <"$pgid_file"
}

# Stops the running command, leftover benchmark processes and the cluster,
# then deletes the temporary directory. As the EXIT trap it runs on every exit
# except SIGKILL.
cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [[ -n "$CHILD_PID" ]] && kill -0 "$CHILD_PID" 2>/dev/null; then
        log "stopping process $CHILD_PID"
        kill -TERM "$CHILD_PID" 2>/dev/null || true
        local attempt
        for attempt in $(seq 1 100); do
            kill -0 "$CHILD_PID" 2>/dev/null || break
            ((attempt % 25 == 0)) && log "still waiting for process $CHILD_PID to exit"
            sleep 0.2
        done
        kill -KILL "$CHILD_PID" 2>/dev/null || true
        wait "$CHILD_PID" 2>/dev/null || true
    fi
    if [[ -n "$WORK_DIR" && -d "$WORK_DIR" ]]; then
        kill_leftover_groups
        stop_cluster
        if [[ "$KEEP_TMP" = 1 ]]; then
            log "kept $WORK_DIR"
        else
            rm -rf -- "$WORK_DIR"
        fi
    fi
    exit "$status"
}

main() {
    # libpq reads these; clearing them keeps the caller's environment from
    # redirecting connections. UNIBENCH_STORE and UNIBENCH_TIMINGS would change
    # the store and the timings of the runs.
    unset PGHOST PGHOSTADDR PGPORT PGUSER PGPASSWORD PGDATABASE PGSERVICE UNIBENCH_STORE UNIBENCH_TIMINGS

    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP

    check_settings
    locate_postgres
    build_unibench
    raise_open_files_limit
    create_cluster
    start_cluster
    load_data
    run_measurements
}

main "$@"
