"""Read CPU time, memory and process trees from Linux /proc.

CPU times are in clock ticks (``os.sysconf('SC_CLK_TCK')``, usually 100 per
second) and include every thread of a process. Only processes alive when a
sample is taken are counted, so CPU used by a process that exits between two
samples is lost.
"""

import os
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def read_text(path):
    """Return the content of a /proc file, or None when the process is gone."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def cpu_ticks(pid):
    """Return utime + stime of a process in clock ticks, or None when it is gone."""
    text = read_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    # The command name (field 2) may contain spaces, so split after its ")".
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def is_running(pid):
    """Return True while a process exists and is not a zombie."""
    text = read_text(f"/proc/{pid}/stat")
    if text is None:
        return False
    return text[text.rindex(")") + 2] != "Z"


def children(pid):
    """Return the direct children of a process (all of its threads' children)."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return found
    for task in tasks:
        text = read_text(f"/proc/{pid}/task/{task}/children")
        if text:
            found.extend(int(child) for child in text.split())
    return found


def descendants(pid):
    """Return every descendant of a process, depth first."""
    found = []
    pending = children(pid)
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children(child))
    return found


def cmdline(pid):
    """Return the argument list of a process, or [] when it is gone."""
    text = read_text(f"/proc/{pid}/cmdline")
    if not text:
        return []
    return text.rstrip("\0").split("\0")


def memory_kib(pid):
    """Return {'VmRSS': KiB, 'VmHWM': KiB} of a process, or None when it is gone."""
    text = read_text(f"/proc/{pid}/status")
    if text is None:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values or None


def socket_count(pid):
    """Return how many open file descriptors of a process are sockets."""
    try:
        entries = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    count = 0
    for entry in entries:
        try:
            if os.readlink(f"/proc/{pid}/fd/{entry}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


def system_ticks():
    """Return (busy, total) CPU ticks of the whole machine from /proc/stat."""
    with open("/proc/stat", "r", encoding="ascii") as handle:
        values = [int(value) for value in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already part of user time
    return total - idle, total


def sample_cpu(roles):
    """Sample CPU ticks of groups of processes.

    ``roles`` maps a role name to a function that returns the pids of that
    role at sampling time. Returns a dict with the monotonic time, the ticks
    per pid and role, and the machine's busy and total ticks.
    """
    processes = {}
    for role, list_pids in roles.items():
        for pid in list_pids():
            ticks = cpu_ticks(pid)
            if ticks is not None:
                processes[pid] = (role, ticks)
    busy, total = system_ticks()
    return {"time": time.monotonic(), "processes": processes, "system_busy": busy, "system_total": total}


def cpu_between(first, second):
    """Return CPU seconds per role between two samples, plus the wall time.

    A process present in both samples counts its difference; one that
    appeared after the first sample counts all of its ticks. The result also
    has ``machine_busy`` (busy CPU seconds of the whole machine) and
    ``machine_cores`` (CPU seconds available, wall time x cores).
    """
    wall = second["time"] - first["time"]
    per_role = {}
    for pid, (role, ticks) in second["processes"].items():
        before = first["processes"].get(pid)
        used = ticks - before[1] if before else ticks
        per_role[role] = per_role.get(role, 0.0) + used / CLOCK_TICKS
    for role, _ in first["processes"].values():
        per_role.setdefault(role, 0.0)
    return {
        "wall_seconds": wall,
        "cpu_seconds": per_role,
        "machine_busy_seconds": (second["system_busy"] - first["system_busy"]) / CLOCK_TICKS,
        "machine_capacity_seconds": (second["system_total"] - first["system_total"]) / CLOCK_TICKS,
    }


def socket_inodes(pid):
    """Return the inode numbers of the sockets a process has open."""
    inodes = set()
    try:
        entries = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return inodes
    for entry in entries:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{entry}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def local_tcp_ports(pids):
    """Return {local TCP port: pid} for the IPv4 and IPv6 sockets of the given processes."""
    owner_by_inode = {}
    for pid in pids:
        for inode in socket_inodes(pid):
            owner_by_inode[inode] = pid
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        text = read_text(table) or ""
        for line in text.splitlines()[1:]:
            fields = line.split()
            inode = int(fields[9])
            if inode in owner_by_inode:
                ports[int(fields[1].rsplit(":", 1)[1], 16)] = owner_by_inode[inode]
    return ports
