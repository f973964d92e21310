#!/usr/bin/env python3
"""Measure unibench against pgbench on a PostgreSQL cluster that run.sh prepared.

The cluster must hold the pgbench tables in database ``bench`` and an applied
unibench PostgreSQL store in database ``unibench_store`` with the
pg_stat_statements extension. Every process started here runs in its own
session and is killed, with its process group, when the script exits for any
reason (including SIGINT and SIGTERM). Each process has a deadline.

The script writes the results as JSON and prints the table of figures. A
figure that misses its goal does not change the exit status, and a measurement
that fails is recorded under "errors" while the others still run.
"""

import argparse
import json
import os
import random
import re
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import procfs
import report

# Time after which a schema apply or psql call is killed.
SHORT_COMMAND_SECONDS = 60
# Extra time a run gets on top of warmup + duration for start-up and stop.
RUN_SLACK_SECONDS = 240
# Time a run gets to exit after SIGINT before it is killed.
STOP_DEADLINE_SECONDS = 60
# How long a STOP-latency run measures before SIGINT, plus a random 0-1 s so
# that SIGINT does not always arrive at the same point of the 1 s poll cycles.
STOP_SETTLE_SECONDS = 2.0
# A pgbench run measures CPU after this much time, to skip connection set-up.
PGBENCH_CONNECT_SECONDS = 0.5

MEASUREMENT_LINE = re.compile(r"\bphase MEASUREMENT\b")
COOLDOWN_LINE = re.compile(r"\bphase COOLDOWN\b")


def log(message):
    print(f"measure.py: {message}", file=sys.stderr, flush=True)


class ProcessRegistry:
    """Starts child processes in new sessions and kills their process groups."""

    def __init__(self, pgid_file):
        self.pgid_file = pgid_file
        self.groups = set()

    def start(self, args, env):
        popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            start_new_session=True,
        )
        self.groups.add(popen.pid)
        # run.sh reads this file to kill leftover groups if this script dies.
        with open(self.pgid_file, "a", encoding="ascii") as handle:
            handle.write(f"{popen.pid}\n")
        return popen

    def kill_group(self, pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.groups.discard(pgid)

    def kill_all(self):
        for pgid in list(self.groups):
            self.kill_group(pgid)


class ChildProcess:
    """A started process whose stderr lines are read with timestamps."""

    def __init__(self, registry, args, env, log_path):
        self.registry = registry
        self.args = args
        self.started = time.monotonic()
        self.popen = registry.start(args, env)
        self.pid = self.popen.pid
        self.stderr_lines = []
        self.stderr_closed = False
        self.stdout_text = ""
        self.returncode = None
        self.killed = False
        self._condition = threading.Condition()
        self._stderr_thread = threading.Thread(target=self._read_stderr, args=(log_path,), daemon=True)
        self._stdout_thread = threading.Thread(target=self._read_stdout, daemon=True)
        self._stderr_thread.start()
        self._stdout_thread.start()

    def _read_stderr(self, log_path):
        with open(log_path, "w", encoding="utf-8") as log_file:
            log_file.write(" ".join(self.args) + "\n")
            for line in self.popen.stderr:
                now = time.monotonic()
                log_file.write(f"{now - self.started:9.3f} {line}")
                with self._condition:
                    self.stderr_lines.append((now, line.rstrip("\n")))
                    self._condition.notify_all()
        with self._condition:
            self.stderr_closed = True
            self._condition.notify_all()

    def _read_stdout(self):
        self.stdout_text = self.popen.stdout.read()

    def wait_for_line(self, pattern, deadline):
        """Return the time of the first stderr line matching ``pattern``, or None."""
        index = 0
        with self._condition:
            while True:
                while index < len(self.stderr_lines):
                    seen_at, line = self.stderr_lines[index]
                    index += 1
                    if pattern.search(line):
                        return seen_at
                remaining = deadline - time.monotonic()
                if self.stderr_closed or remaining <= 0:
                    return None
                self._condition.wait(timeout=min(remaining, 0.5))

    def running(self):
        return self.popen.poll() is None

    def wait(self, deadline):
        """Wait for the exit until ``deadline``, then kill the process group."""
        try:
            self.returncode = self.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"timed out, killing process group {self.pid}: {' '.join(self.args[:3])} ...")
            self.killed = True
            self.registry.kill_group(self.pid)
            self.returncode = self.popen.wait(timeout=30)
        # Kill anything left in the group, such as a worker whose parent died.
        self.registry.kill_group(self.pid)
        self._stdout_thread.join(timeout=10)
        self._stderr_thread.join(timeout=10)
        return self.returncode

    def stderr_tail(self, count=5):
        with self._condition:
            return [line for _, line in self.stderr_lines[-count:]]


def sleep_until(moment):
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def run_short(registry, args, env, log_path, description):
    """Run a short command to completion and return its stdout.

    Raises RuntimeError when the command fails or times out.
    """
    child = ChildProcess(registry, args, env, log_path)
    code = child.wait(time.monotonic() + SHORT_COMMAND_SECONDS)
    if code != 0:
        raise RuntimeError(f"{description} failed with exit code {code}: {' | '.join(child.stderr_tail())}")
    return child.stdout_text


class Bench:
    """Configuration and helpers shared by all measurements."""

    def __init__(self, options, registry):
        self.options = options
        self.registry = registry
        self.workdir = Path(options.workdir)
        self.logs = self.workdir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.stores = self.workdir / "stores"
        self.stores.mkdir(exist_ok=True)
        self.templates = self.workdir / "templates"
        self.templates.mkdir(exist_ok=True)
        self.sequence = 0
        self.max_aid = 100_000 * options.scale
        self.env = dict(os.environ)
        for name in ("UNIBENCH_STORE", "UNIBENCH_TIMINGS"):
            self.env.pop(name, None)
        self.env["UNIBENCH_HOME"] = str(self.workdir / "home")

    def next_label(self, label):
        self.sequence += 1
        return f"{self.sequence:03d}-{label}"

    def postmaster_pid(self):
        text = procfs.read_text(os.path.join(self.options.pgdata, "postmaster.pid"))
        return int(text.splitlines()[0])

    def postgres_pids(self):
        postmaster = self.postmaster_pid()
        return [postmaster, *procfs.descendants(postmaster)]

    def psql(self, database, sql, label):
        args = [
            self.options.psql, "--no-psqlrc", "--quiet", "--no-align", "--tuples-only",
            "--field-separator=\t", "--set=ON_ERROR_STOP=1",
            f"postgres://postgres@127.0.0.1:{self.options.port}/{database}", "--command", sql,
        ]
        return run_short(self.registry, args, self.env, self.logs / f"{label}.log", "psql")

    def sqlite_store(self, label):
        path = self.stores / f"{label}.db"
        url = f"sqlite://{path}"
        args = [self.options.unibench, "schema", "apply", "--store", url]
        run_short(self.registry, args, self.env, self.logs / f"{label}-schema.log", "unibench schema apply")
        return url, path

    def write_template(self, label, connections, workers, warmup, duration, query_log):
        path = self.templates / f"{label}.yaml"
        path.write_text(
            f"""name: bench {label}
target:
  kind: postgres
  connection: bench-pg
  table: public.pgbench_accounts
  table_type: POSTGRES
  key_column: aid
workload:
  load_mode: CONCURRENCY
  concurrent_connections: {connections}
  warmup_seconds: {warmup}
  duration_seconds: {duration}
  operations:
    - kind: POINT_LOOKUP
      weight_pct: 100
      sql: SELECT abalance FROM {{table}} WHERE aid = $1
      params: ["random_int(1, {self.max_aid})"]
  key_distribution: uniform
  query_log: "{query_log}"
scaling:
  per_worker_connections: auto
  worker_count: {workers}
""",
            encoding="utf-8",
        )
        return path

    def unibench_args(self, template, store_url, connections, workers, warmup, duration):
        return [
            self.options.unibench, "run", "--template", str(template), "--store", store_url,
            "--workers", str(workers), "--connections", str(connections),
            "--warmup", str(warmup), "--duration", str(duration), "--json",
        ]

    def window(self, start, duration):
        """Return the steady part of a measurement of ``duration`` seconds from ``start``."""
        head = min(1.0, duration * 0.25)
        tail = min(0.5, duration * 0.15)
        return start + head, start + duration - tail


def worker_pids(run_pid):
    return [pid for pid in procfs.descendants(run_pid) if "worker" in procfs.cmdline(pid)[1:2]]


class MemorySampler(threading.Thread):
    """Samples VmHWM and VmRSS of a run's worker processes until the run exits."""

    def __init__(self, child, interval, count_sockets):
        super().__init__(daemon=True)
        self.child = child
        self.interval = interval
        self.count_sockets = count_sockets
        self.peak_hwm_kib = {}
        self.peak_rss_kib = {}
        self.peak_sockets = {}

    def run(self):
        last_socket_count = 0.0
        while self.child.running():
            now = time.monotonic()
            for pid in worker_pids(self.child.pid):
                memory = procfs.memory_kib(pid)
                if memory:
                    self.peak_hwm_kib[pid] = max(self.peak_hwm_kib.get(pid, 0), memory.get("VmHWM", 0))
                    self.peak_rss_kib[pid] = max(self.peak_rss_kib.get(pid, 0), memory.get("VmRSS", 0))
                if self.count_sockets and now - last_socket_count >= 1.0:
                    self.peak_sockets[pid] = max(self.peak_sockets.get(pid, 0), procfs.socket_count(pid))
            if self.count_sockets and now - last_socket_count >= 1.0:
                last_socket_count = now
            time.sleep(self.interval)

    def result(self):
        return {
            "workers": len(self.peak_hwm_kib),
            "peak_hwm_kib": max(self.peak_hwm_kib.values(), default=None),
            "peak_rss_kib": max(self.peak_rss_kib.values(), default=None),
            "peak_sockets": max(self.peak_sockets.values(), default=None) if self.count_sockets else None,
        }


def summarize_cpu(first, second, client_roles, queries_per_second):
    """Return the CPU figures of a measurement window."""
    if first is None or second is None:
        return None
    between = procfs.cpu_between(first, second)
    wall = between["wall_seconds"]
    cpu = between["cpu_seconds"]
    client = sum(cpu.get(role, 0.0) for role in client_roles)
    postgres = cpu.get("postgres", 0.0)
    other = max(0.0, between["machine_busy_seconds"] - client - postgres)
    result = {
        "window_seconds": wall,
        "cpu_seconds": cpu,
        "client_cpu_seconds": client,
        "client_cores": client / wall if wall > 0 else None,
        "postgres_cores": postgres / wall if wall > 0 else None,
        "other_cores": other / wall if wall > 0 else None,
        "machine_busy_fraction": (
            between["machine_busy_seconds"] / between["machine_capacity_seconds"]
            if between["machine_capacity_seconds"] > 0 else None
        ),
        "client_cpu_us_per_query": None,
    }
    if queries_per_second and wall > 0:
        result["client_cpu_us_per_query"] = client / wall / queries_per_second * 1e6
    return result


def run_unibench(bench, label, connections, workers, query_log, duration, store_url=None,
                 at_window_start=None, at_window_end=None, on_start=None, memory_interval=1.0,
                 count_sockets=False):
    """Run `unibench run` once and return its figures.

    CPU is sampled for the run process and its descendants over the steady
    part of the measurement window: from 1 s after the run reports phase
    MEASUREMENT until 0.5 s before the measurement ends.
    """
    options = bench.options
    label = bench.next_label(label)
    store_path = None
    if store_url is None:
        store_url, store_path = bench.sqlite_store(label)
    template = bench.write_template(label, connections, workers, options.warmup, duration, query_log)
    args = bench.unibench_args(template, store_url, connections, workers, options.warmup, duration)
    log(f"{label}: unibench run, {connections} connections, {workers} workers, query_log {query_log}, {duration} s")
    child = ChildProcess(bench.registry, args, bench.env, bench.logs / f"{label}.log")
    if on_start:
        on_start(child)
    deadline = child.started + RUN_SLACK_SECONDS + options.warmup + duration
    memory = MemorySampler(child, memory_interval, count_sockets)
    memory.start()
    roles = {
        "orchestrator": lambda: [child.pid],
        "workers": lambda: procfs.descendants(child.pid),
        "postgres": bench.postgres_pids,
    }
    cpu_samples = [None, None]
    hook_results = {}
    measuring_at = child.wait_for_line(MEASUREMENT_LINE, deadline)
    cooldown_at = None
    if measuring_at is not None:
        begin, end = bench.window(measuring_at, duration)
        sleep_until(begin)
        if child.running():
            cpu_samples[0] = procfs.sample_cpu(roles)
            if at_window_start:
                hook_results["start"] = at_window_start()
        sleep_until(end)
        if child.running():
            if at_window_end:
                hook_results["end"] = at_window_end()
            cpu_samples[1] = procfs.sample_cpu(roles)
        cooldown_at = child.wait_for_line(COOLDOWN_LINE, deadline)
    code = child.wait(deadline)
    exited_at = time.monotonic()
    memory.join(timeout=5)

    summary = None
    try:
        summary = json.loads(child.stdout_text)
    except json.JSONDecodeError:
        pass
    qps = summary.get("qps") if summary else None
    result = {
        "label": label,
        "connections": connections,
        "workers": workers,
        "query_log": query_log,
        "duration_seconds": duration,
        "exit_code": code,
        "killed": child.killed,
        "status": summary.get("status") if summary else None,
        "qps": qps,
        "operations": summary.get("totals", {}).get("operations") if summary else None,
        "failed": summary.get("totals", {}).get("failed") if summary else None,
        "measured_seconds": summary.get("duration_seconds") if summary else None,
        "latency_ms": summary.get("latency") if summary else None,
        "seconds_to_measurement": None if measuring_at is None else measuring_at - child.started,
        "seconds_from_cooldown_to_exit": None if cooldown_at is None else exited_at - cooldown_at,
        "cpu": summarize_cpu(cpu_samples[0], cpu_samples[1], ("orchestrator", "workers"), qps),
        "memory": memory.result(),
        "window_hooks": hook_results,
    }
    if code != 0 or summary is None:
        result["stderr_tail"] = child.stderr_tail(10)
        log(f"{label}: exit code {code}; last output: {' | '.join(child.stderr_tail(3))}")
    else:
        drain = result["seconds_from_cooldown_to_exit"]
        log(f"{label}: {qps:.0f} qps, status {result['status']}, "
            f"exit {'-' if drain is None else f'{drain:.1f}'} s after COOLDOWN")
    if store_path is not None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    return result


def parse_pgbench(text):
    def number(pattern):
        match = re.search(pattern, text, re.MULTILINE)
        return float(match.group(1)) if match else None

    return {
        "tps": number(r"^tps = ([0-9.]+) \(without initial connection time\)"),
        "transactions": number(r"^number of transactions actually processed: (\d+)"),
        "failed": number(r"^number of failed transactions: (\d+)"),
        "latency_average_ms": number(r"^latency average = ([0-9.]+) ms"),
        "initial_connection_ms": number(r"^initial connection time = ([0-9.]+) ms"),
    }


def pgbench_args(bench, connections, seconds):
    options = bench.options
    return [
        options.pgbench, "--host=127.0.0.1", f"--port={options.port}", "--username=postgres",
        "--select-only", "--protocol=prepared", f"--client={connections}",
        f"--jobs={min(options.threads, connections)}", f"--time={seconds}", "--no-vacuum", "bench",
    ]


def run_pgbench(bench, connections, duration):
    """Run an uncounted pgbench warmup, then the measured pgbench run.

    CPU is sampled for the pgbench process over the steady part of the run:
    from 1.5 s after it starts until 0.5 s before its end.
    """
    options = bench.options
    label = bench.next_label(f"pgbench-{connections}")
    log(f"{label}: pgbench, {connections} connections, {options.warmup} s warmup + {duration} s")
    if options.warmup > 0:
        warmup = ChildProcess(bench.registry, pgbench_args(bench, connections, options.warmup), bench.env,
                              bench.logs / f"{label}-warmup.log")
        warmup.wait(warmup.started + options.warmup + RUN_SLACK_SECONDS)

    child = ChildProcess(bench.registry, pgbench_args(bench, connections, duration), bench.env,
                         bench.logs / f"{label}.log")
    roles = {"pgbench": lambda: [child.pid], "postgres": bench.postgres_pids}
    begin, end = bench.window(child.started + PGBENCH_CONNECT_SECONDS, duration - PGBENCH_CONNECT_SECONDS)
    first = second = None
    sleep_until(begin)
    if child.running():
        first = procfs.sample_cpu(roles)
    sleep_until(end)
    if child.running():
        second = procfs.sample_cpu(roles)
    code = child.wait(child.started + duration + RUN_SLACK_SECONDS)
    parsed = parse_pgbench(child.stdout_text)
    result = {
        "label": label,
        "connections": connections,
        "duration_seconds": duration,
        "exit_code": code,
        "killed": child.killed,
        **parsed,
        "cpu": summarize_cpu(first, second, ("pgbench",), parsed["tps"]),
    }
    if code != 0 or parsed["tps"] is None:
        result["stderr_tail"] = child.stderr_tail(10)
        log(f"{label}: exit code {code}; last output: {' | '.join(child.stderr_tail(3))}")
    else:
        log(f"{label}: {parsed['tps']:.0f} tps")
    return result


def measure_throughput(bench):
    """Alternate pgbench and unibench runs, pair by pair, at each connection count."""
    options = bench.options
    runs = []
    for connections in options.connections:
        for pair in range(options.pairs):
            policies = ["off"]
            if connections == options.query_log_connections:
                policies += ["sample:0.01", "all"]
            pgbench = run_pgbench(bench, connections, options.duration)
            pair_runs = {"connections": connections, "pair": pair + 1, "pgbench": pgbench, "unibench": {}}
            for policy in policies:
                pair_runs["unibench"][policy] = run_unibench(
                    bench, f"unibench-{connections}-{policy.replace(':', '')}", connections, 1, policy,
                    options.duration,
                )
            runs.append(pair_runs)
    return runs


def measure_memory(bench):
    """Measure the peak RSS of a worker with many connections and of one with 1 connection."""
    options = bench.options
    results = {}
    for connections in (options.memory_connections, 1):
        results[str(connections)] = run_unibench(
            bench, f"memory-{connections}", connections, 1, "off", options.memory_duration,
            memory_interval=0.2, count_sockets=True,
        )
    return results


def wait_for_exits(pids, deadline):
    """Wait until every pid has exited or the deadline passes.

    Returns {pid: monotonic exit time, or None when it was still running}.
    """
    exited = {pid: None for pid in pids}
    descriptors = {}
    for pid in pids:
        try:
            descriptors[os.pidfd_open(pid)] = pid
        except (AttributeError, OSError):
            # Without pidfd support, or the process is already gone.
            if not procfs.is_running(pid):
                exited[pid] = time.monotonic()
    try:
        poller = select.poll()
        for descriptor in descriptors:
            poller.register(descriptor, select.POLLIN)
        while any(value is None for value in exited.values()) and time.monotonic() < deadline:
            for descriptor, _ in poller.poll(5):
                pid = descriptors[descriptor]
                if exited[pid] is None:
                    exited[pid] = time.monotonic()
                poller.unregister(descriptor)
            now = time.monotonic()
            for pid in pids:
                if exited[pid] is None and pid not in descriptors.values() and not procfs.is_running(pid):
                    exited[pid] = now
    finally:
        for descriptor in descriptors:
            os.close(descriptor)
    return exited


def measure_stop(bench):
    """Measure the time from SIGINT to `unibench run` until its last worker process exits."""
    options = bench.options
    results = []
    for index in range(options.stop_runs):
        label = bench.next_label(f"stop-{index + 1}")
        store_url, store_path = bench.sqlite_store(label)
        duration = 3600
        template = bench.write_template(label, options.stop_connections, 2, options.warmup, duration, "off")
        args = bench.unibench_args(template, store_url, options.stop_connections, 2, options.warmup, duration)
        child = ChildProcess(bench.registry, args, bench.env, bench.logs / f"{label}.log")
        deadline = child.started + RUN_SLACK_SECONDS + options.warmup
        result = {"label": label, "workers": None, "stop_seconds": None, "run_exit_seconds": None}
        measuring_at = child.wait_for_line(MEASUREMENT_LINE, deadline)
        if measuring_at is None:
            result["error"] = "the run never reached MEASUREMENT"
        else:
            sleep_until(measuring_at + STOP_SETTLE_SECONDS + random.random())
            workers = worker_pids(child.pid)
            result["workers"] = len(workers)
            signalled_at = time.monotonic()
            os.kill(child.pid, signal.SIGINT)
            exits = wait_for_exits(workers, signalled_at + STOP_DEADLINE_SECONDS)
            if workers and all(value is not None for value in exits.values()):
                result["stop_seconds"] = max(exits.values()) - signalled_at
            else:
                result["error"] = "a worker was still running after the stop deadline"
            code = child.wait(signalled_at + STOP_DEADLINE_SECONDS)
            result["run_exit_seconds"] = time.monotonic() - signalled_at if not child.killed else None
            result["exit_code"] = code
            try:
                result["status"] = json.loads(child.stdout_text).get("status")
            except json.JSONDecodeError:
                result["status"] = None
        if child.running():
            child.wait(time.monotonic())
        stop = result["stop_seconds"]
        log(f"{label}: {result['workers']} workers, stop {'-' if stop is None else f'{stop:.3f} s'}, "
            f"status {result.get('status')}")
        results.append(result)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    return results


STATEMENTS_SQL = """
SELECT coalesce(sum(calls), 0),
       coalesce(sum(calls) FILTER (WHERE query ~* '^\\s*(BEGIN|COMMIT|ROLLBACK|START TRANSACTION|SAVEPOINT|RELEASE)'), 0)
FROM pg_stat_statements s
JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = current_database() AND s.query !~* 'pg_stat_(statements|database)';
SELECT s.calls, left(regexp_replace(s.query, '\\s+', ' ', 'g'), 140)
FROM pg_stat_statements s
JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = current_database() AND s.query !~* 'pg_stat_(statements|database)'
ORDER BY s.calls DESC
LIMIT 15;
"""

XACT_SQL = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database();"


# A statement line of the server log with log_line_prefix '%m [%p] %r ':
# "2024-01-01 12:00:00.000 UTC [1234] 127.0.0.1(5678) LOG:  execute s1: SELECT ..."
LOGGED_STATEMENT = re.compile(r"^\S+ \S+ \S+ \[\d+\] [^ ]*\((\d+)\) LOG:  (?:statement|execute [^:]*): ")
WINDOW_START_MARK = "pg_stat_statements_reset"
WINDOW_END_MARK = "unibench-bench-window-end"


def attribute_statements(log_text, ports):
    """Count logged statements between the window marks, per client process.

    ``ports`` maps a client's local TCP port to a role name. Returns
    {role: statements}; statements from ports not in ``ports`` count as
    "unattributed".
    """
    counts = {}
    inside = False
    for line in log_text.splitlines():
        match = LOGGED_STATEMENT.match(line)
        if not match:
            continue
        if WINDOW_START_MARK in line:
            inside = True
            continue
        if WINDOW_END_MARK in line:
            break
        if inside:
            role = ports.get(int(match.group(1)), "unattributed")
            counts[role] = counts.get(role, 0) + 1
    return counts


def measure_control_plane(bench):
    """Count store statements during a steady run on a PostgreSQL store.

    The primary count is pg_stat_statements' sum of calls in the store
    database over the window. To split it between the orchestrator and the
    workers, the store database logs every statement (log_statement = all)
    with the client's port, and each port is mapped to the process that owns
    the socket.
    """
    options = bench.options
    database = options.store_database
    store_url = f"postgres://postgres@127.0.0.1:{options.port}/{database}"
    marks = {}
    roles_by_port = {}

    def at_start():
        marks["log_offset"] = os.path.getsize(options.pglog)
        xact = bench.psql(database, XACT_SQL + " SELECT pg_stat_statements_reset();", "control-plane-reset")
        marks["start"] = time.monotonic()
        return {"xact_commit": int(xact.split()[0])}

    def at_end():
        marks["end"] = time.monotonic()
        text = bench.psql(database, f"-- {WINDOW_END_MARK}\n" + XACT_SQL + STATEMENTS_SQL, "control-plane-read")
        run_pid = marks["run_pid"]
        workers = worker_pids(run_pid)
        for port, pid in procfs.local_tcp_ports([run_pid, *workers]).items():
            roles_by_port[port] = "orchestrator" if pid == run_pid else "workers"
        lines = text.strip().splitlines()
        total, transaction_control = (int(value) for value in lines[1].split("\t"))
        top = []
        for line in lines[2:]:
            calls, _, query = line.partition("\t")
            top.append({"calls": int(calls), "query": query})
        return {
            "xact_commit": int(lines[0]),
            "statements": total,
            "transaction_control_statements": transaction_control,
            "top_statements": top,
        }

    bench.psql(database, f"ALTER DATABASE {database} SET log_statement = 'all'; "
                         f"ALTER DATABASE {database} SET log_parameter_max_length = 0;", "control-plane-log-on")
    try:
        run = run_unibench(
            bench, "control-plane", options.control_connections, options.control_workers, "off",
            options.duration, store_url=store_url, at_window_start=at_start, at_window_end=at_end,
            on_start=lambda child: marks.update(run_pid=child.pid),
        )
    finally:
        bench.psql(database, f"ALTER DATABASE {database} RESET log_statement; "
                             f"ALTER DATABASE {database} RESET log_parameter_max_length;", "control-plane-log-off")
    hooks = run.get("window_hooks", {})
    result = {"run": run}
    if "start" in hooks and "end" in hooks:
        seconds = marks["end"] - marks["start"]
        workers = options.control_workers
        end = hooks["end"]
        with open(options.pglog, "r", encoding="utf-8", errors="replace") as handle:
            handle.seek(marks["log_offset"])
            logged = attribute_statements(handle.read(), roles_by_port)
        result.update({
            "window_seconds": seconds,
            "statements": end["statements"],
            "statements_per_worker_second": end["statements"] / workers / seconds,
            "statements_without_transaction_control_per_worker_second":
                (end["statements"] - end["transaction_control_statements"]) / workers / seconds,
            "xact_commit_delta": end["xact_commit"] - hooks["start"]["xact_commit"],
            "xact_commit_per_worker_second": (end["xact_commit"] - hooks["start"]["xact_commit"]) / workers / seconds,
            "logged_statements": logged,
            "worker_own_statements_per_worker_second": logged.get("workers", 0) / workers / seconds,
            "orchestrator_statements_per_second": logged.get("orchestrator", 0) / seconds,
            "top_statements": end["top_statements"],
        })
    return result


def machine_description(options):
    cpu_model = None
    for line in (procfs.read_text("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    memory_kib = None
    for line in (procfs.read_text("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    return {
        "cores": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1) if memory_kib else None,
        "kernel": os.uname().release,
        "postgres_version": options.postgres_version,
        "load_average_at_start": os.getloadavg(),
        "unibench_commit": options.commit,
    }


def parse_options():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unibench", required=True, help="path of the unibench binary")
    parser.add_argument("--pgbench", required=True, help="path of pgbench")
    parser.add_argument("--psql", required=True, help="path of psql")
    parser.add_argument("--port", type=int, required=True, help="PostgreSQL port on 127.0.0.1")
    parser.add_argument("--pgdata", required=True, help="the cluster's data directory")
    parser.add_argument("--pglog", required=True, help="the server log, written with log_line_prefix '%%m [%%p] %%r '")
    parser.add_argument("--workdir", required=True, help="private directory for stores, templates and logs")
    parser.add_argument("--results", required=True, help="JSON file to write")
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale factor of the data")
    parser.add_argument("--duration", type=int, default=15, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=3, help="uncounted warmup seconds per run")
    parser.add_argument("--pairs", type=int, default=5, help="pgbench/unibench pairs per connection count")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 32, 128], help="connection counts")
    parser.add_argument("--query-log-connections", type=int, default=32,
                        help="connection count at which query_log sample:0.01 and all are also run")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="pgbench --jobs")
    parser.add_argument("--memory-connections", type=int, default=1000, help="connections of the memory run")
    parser.add_argument("--memory-duration", type=int, default=15, help="measured seconds of each memory run")
    parser.add_argument("--stop-runs", type=int, default=10, help="number of STOP-latency runs")
    parser.add_argument("--stop-connections", type=int, default=8, help="connections of each STOP run (2 workers)")
    parser.add_argument("--control-workers", type=int, default=2, help="workers of the control-plane run")
    parser.add_argument("--control-connections", type=int, default=32, help="connections of the control-plane run")
    parser.add_argument("--store-database", default="unibench_store", help="database of the PostgreSQL store")
    parser.add_argument("--postgres-version", default=None, help="server version, for the report")
    parser.add_argument("--commit", default=None, help="unibench commit, for the report")
    parser.add_argument("--only", nargs="+", choices=["throughput", "memory", "stop", "control"],
                        default=["throughput", "memory", "stop", "control"], help="measurements to run")
    return parser.parse_args()


def raise_exit(signal_number, _frame):
    raise SystemExit(128 + signal_number)


def main():
    options = parse_options()
    signal.signal(signal.SIGTERM, raise_exit)
    signal.signal(signal.SIGHUP, raise_exit)

    registry = ProcessRegistry(Path(options.workdir) / "pgids")
    bench = Bench(options, registry)
    results = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_description(options),
        "config": {
            "duration_seconds": options.duration,
            "warmup_seconds": options.warmup,
            "pairs": options.pairs,
            "connections": options.connections,
            "query_log_connections": options.query_log_connections,
            "pgbench_jobs": options.threads,
            "scale": options.scale,
            "memory_connections": options.memory_connections,
            "memory_duration_seconds": options.memory_duration,
            "stop_runs": options.stop_runs,
            "stop_connections": options.stop_connections,
            "control_workers": options.control_workers,
            "control_connections": options.control_connections,
        },
    }

    measurements = [
        ("throughput", "throughput", measure_throughput),
        ("memory", "memory", measure_memory),
        ("stop", "stop", measure_stop),
        ("control", "control_plane", measure_control_plane),
    ]
    errors = {}
    try:
        for name, key, measure in measurements:
            if name not in options.only:
                continue
            try:
                results[key] = measure(bench)
            except (OSError, RuntimeError, ValueError, IndexError, KeyError, subprocess.SubprocessError) as error:
                log(f"the {name} measurement failed: {error}")
                errors[name] = str(error)
                registry.kill_all()
    finally:
        registry.kill_all()
    results["errors"] = errors

    results["figures"] = report.figures(results)
    Path(options.results).parent.mkdir(parents=True, exist_ok=True)
    Path(options.results).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(report.table(results))
    print(f"\nresults written to {options.results}")


if __name__ == "__main__":
    main()
