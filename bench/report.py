#!/usr/bin/env python3
"""Compute the figures of a benchmark result and print them as a table.

measure.py calls this module; run it alone to print the table of a results
file again: ``python3 bench/report.py bench/results/latest.json``.
"""

import json
import statistics
import sys


def median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def cpu_per_query(run):
    cpu = run.get("cpu") or {}
    return cpu.get("client_cpu_us_per_query")


def figure(key, name, value, unit, display, goal=None, met=None):
    return {"id": key, "name": name, "value": value, "unit": unit, "display": display, "goal": goal, "met": met}


def fmt(value, digits=2):
    return "-" if value is None else f"{value:,.{digits}f}"


def throughput_figures(results):
    figures = []
    pairs = results.get("throughput") or []
    config = results["config"]
    log_connections = config.get("query_log_connections")
    for connections in config["connections"]:
        rows = [pair for pair in pairs if pair["connections"] == connections]
        if not rows:
            continue
        pgbench_tps = median(pair["pgbench"].get("tps") for pair in rows)
        pgbench_cpu = median(cpu_per_query(pair["pgbench"]) for pair in rows)
        policies = ["off"]
        if connections == log_connections:
            policies += ["sample:0.01", "all"]
        for policy in policies:
            runs = [(pair["pgbench"], pair["unibench"].get(policy)) for pair in rows if pair["unibench"].get(policy)]
            pair_ratios = [ratio(run.get("qps"), base.get("tps")) for base, run in runs]
            qps_ratio = median(pair_ratios)
            measured = [value for value in pair_ratios if value is not None]
            spread = f"pairs {fmt(min(measured))} to {fmt(max(measured))}; " if len(measured) > 1 else ""
            unibench_qps = median(run.get("qps") for _, run in runs)
            goal, met = None, None
            if connections == 32 and policy == "off":
                goal, met = ">= 1.0", None if qps_ratio is None else qps_ratio >= 1.0
            elif connections == 32 and policy == "sample:0.01":
                goal, met = ">= 0.9", None if qps_ratio is None else qps_ratio >= 0.9
            figures.append(figure(
                f"throughput_ratio_{connections}_{policy}",
                f"throughput ratio unibench/pgbench, {connections} conn, query_log {policy}",
                qps_ratio, "ratio",
                f"{fmt(qps_ratio)} ({spread}{fmt(unibench_qps, 0)} qps / {fmt(pgbench_tps, 0)} tps, {len(runs)} pairs)",
                goal, met,
            ))

            cpu_ratio = median(ratio(cpu_per_query(run), cpu_per_query(base)) for base, run in runs)
            unibench_cpu = median(cpu_per_query(run) for _, run in runs)
            goal, met = None, None
            if policy == "off":
                goal, met = "<= 1.2", None if cpu_ratio is None else cpu_ratio <= 1.2
            figures.append(figure(
                f"cpu_ratio_{connections}_{policy}",
                f"client CPU per query unibench/pgbench, {connections} conn, query_log {policy}",
                cpu_ratio, "ratio",
                f"{fmt(cpu_ratio)} ({fmt(unibench_cpu, 1)} us / {fmt(pgbench_cpu, 1)} us)",
                goal, met,
            ))
    return figures


def memory_figures(results):
    memory = results.get("memory")
    if not memory:
        return []
    many_key = str(results["config"]["memory_connections"])
    many = (memory.get(many_key) or {}).get("memory") or {}
    single = (memory.get("1") or {}).get("memory") or {}
    many_peak = many.get("peak_hwm_kib")
    single_peak = single.get("peak_hwm_kib")
    connections = int(many_key)
    per_connection = None
    if many_peak is not None and single_peak is not None and connections > 1:
        per_connection = (many_peak - single_peak) / (connections - 1)
    many_mib = None if many_peak is None else many_peak / 1024
    single_mib = None if single_peak is None else single_peak / 1024
    return [
        figure(
            "worker_peak_rss_many", f"worker peak RSS (VmHWM), {connections} conn", many_mib, "MiB",
            f"{fmt(many_mib, 1)} MiB ({many.get('peak_sockets')} sockets open at peak)",
            "< 64 MiB", None if many_mib is None else many_mib < 64,
        ),
        figure("worker_peak_rss_one", "worker peak RSS (VmHWM), 1 conn", single_mib, "MiB", f"{fmt(single_mib, 1)} MiB"),
        figure(
            "memory_per_connection", "worker memory per connection", per_connection, "KiB",
            f"{fmt(per_connection, 1)} KiB",
        ),
    ]


def stop_figures(results):
    runs = results.get("stop")
    if runs is None:
        return []
    values = [run["stop_seconds"] for run in runs if run.get("stop_seconds") is not None]
    failed = len(runs) - len(values)
    stop_median = median(values)
    stop_max = None if failed or not values else max(values)
    suffix = f", {len(values)} of {len(runs)} runs" + (f", {failed} did not stop in time" if failed else "")
    return [
        figure(
            "stop_median", "STOP latency, SIGINT to last worker exit, median", stop_median, "s",
            f"{fmt(stop_median, 3)} s{suffix}", "< 1.5 s", None if stop_median is None else stop_median < 1.5,
        ),
        figure(
            "stop_max", "STOP latency, SIGINT to last worker exit, max", stop_max, "s",
            f"{fmt(stop_max, 3)} s" if stop_max is not None else f"- ({failed} runs did not stop in time)",
            "< 2 s", None if not values else (stop_max is not None and stop_max < 2.0),
        ),
    ]


def control_figures(results):
    control = results.get("control_plane")
    if not control:
        return []
    workers = results["config"]["control_workers"]
    statements = control.get("statements_per_worker_second")
    without = control.get("statements_without_transaction_control_per_worker_second")
    xact = control.get("xact_commit_per_worker_second")
    own = control.get("worker_own_statements_per_worker_second")
    orchestrator = control.get("orchestrator_statements_per_second")
    return [
        figure(
            "store_statements", f"store statements per worker per second ({workers} workers)", statements,
            "statements/s", f"{fmt(statements)} ({control.get('statements')} in {fmt(control.get('window_seconds'), 1)} s)",
            "<= 4", None if statements is None else statements <= 4,
        ),
        figure(
            "store_statements_without_transaction_control",
            "  same, without BEGIN/COMMIT/ROLLBACK", without, "statements/s", fmt(without),
        ),
        figure("store_xact_commit", "  xact_commit per worker per second", xact, "commits/s", fmt(xact)),
        figure(
            "store_statements_worker_own", "  sent by each worker itself, per second (server log)", own,
            "statements/s", fmt(own),
        ),
        figure(
            "store_statements_orchestrator", "  sent by the orchestrator, per second (server log)", orchestrator,
            "statements/s", fmt(orchestrator),
        ),
    ]


def figures(results):
    """Return every figure of a result, each with its goal and whether it is met."""
    return throughput_figures(results) + memory_figures(results) + stop_figures(results) + control_figures(results)


def table(results):
    """Return the figures of a result as a text table."""
    rows = [("figure", "value", "goal", "met")]
    for item in results.get("figures") or figures(results):
        if item["goal"] is None:
            met = ""
        elif item["met"] is None:
            met = "no data"
        else:
            met = "yes" if item["met"] else "NO"
        rows.append((item["name"], item["display"], item["goal"] or "", met))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    for name, message in (results.get("errors") or {}).items():
        lines.append(f"the {name} measurement failed: {message}")
    return "\n".join(lines)


def main():
    if len(sys.argv) != 2:
        print("usage: report.py RESULTS.json", file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as handle:
        results = json.load(handle)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
