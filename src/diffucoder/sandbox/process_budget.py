"""RLIMIT_NPROC for a job whose code shares its uid with the server (a non-root pod).

The kernel checks RLIMIT_NPROC at fork against every task (threads included) of the forking
process's real uid, not against the forking process's own descendants. With per-slot uids (a root
server) a flat ``max_processes`` is exactly the job's budget. With one uid for everything (the
sandbox image runs as uid 10002 and cannot switch uid), a flat limit would count the server's
threads, the other slots and their jobs too: the code would get whatever was left, possibly
nothing, and one slot's fork bomb would take every other slot's budget.

So the limit is set relative to what the uid holds when the job starts: the job may create
``budget`` tasks beyond that. Two ceilings keep it bounded however jobs overlap: all jobs together
never exceed ``budget`` per slot on top of the tasks that are not jobs' (the server, the slots,
anything else of the uid), and the code's limit always stays ``SERVER_HEADROOM`` below the server's
own limit, so a fork bomb at its limit can never keep the server from starting threads or
restarting a slot.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

# tasks the server and its slots can still start when every job is at its limit
SERVER_HEADROOM = 64


@dataclass(frozen=True)
class Process:
    parent: int
    uid: int
    threads: int


def _processes() -> dict[int, Process]:
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            table[int(name)] = Process(
                parent=int(fields["PPid"]),
                uid=int(fields["Uid"].split()[0]),
                threads=int(fields["Threads"]),
            )
        except (OSError, KeyError, ValueError):
            continue  # exited while we read it
    return table


def shared_uid_limit(*, budget: int, server_pid: int) -> int:
    """RLIMIT_NPROC for a job process that is about to run code as this process's uid.

    Called in the job's forked child before any code runs: the child itself is one of the uid's
    tasks and counts against ``budget``. ``server_pid`` is the slots' parent (the server; under
    bubblewrap, the slot's own init): its children are the executor slots, their descendants jobs.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    return limit_for(
        _processes(),
        uid=os.getuid(),
        server_pid=server_pid,
        budget=budget,
        own_limit=None if soft == resource.RLIM_INFINITY else soft,
    )


def limit_for(
    table: dict[int, Process], *, uid: int, server_pid: int, budget: int, own_limit: int | None
) -> int:
    """The limit from a process table that includes the calling job process (see the module doc)."""
    slots = {pid for pid, p in table.items() if p.parent == server_pid}

    def in_a_job(pid: int) -> bool:
        parent = table[pid].parent
        while parent in table and parent not in slots:
            parent = table[parent].parent
        return parent in slots

    own = {pid: p for pid, p in table.items() if p.uid == uid}
    held = sum(p.threads for p in own.values())
    held_by_jobs = sum(p.threads for pid, p in own.items() if pid not in slots and in_a_job(pid))
    limit = min(held - 1 + budget, held - held_by_jobs + max(len(slots), 1) * budget)
    if own_limit is not None:
        limit = min(limit, own_limit - SERVER_HEADROOM)
    return max(limit, 1)
