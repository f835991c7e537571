"""Crash points for chaos testing: places where a worker may be SIGKILLed, or frozen, on
purpose.

The durable-jobs promise is that a worker killed anywhere loses nothing and duplicates
nothing, and that a worker frozen anywhere (SIGSTOP, a paused VM, a swap storm) past its
lease writes nothing once it wakes. Random outside signals rarely land in the narrow windows
that matter most (between a commit and recording it, between landing a merge and marking the
task merged), so the chaos tests also name those windows here.

``ERRANDS_CRASH_POINTS`` is a comma-separated list of ``name:probability`` (``*`` matches
every point): the worker SIGKILLs itself there with that probability. An item
``name:probability:stall:seconds[:times]`` freezes the whole worker process there instead
(SIGSTOP; a helper process sends SIGCONT after ``seconds``), at most ``times`` times per
process. Unset, as in production, a crash point is one dictionary lookup.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from functools import cache

ENV = "ERRANDS_CRASH_POINTS"
STALL_MESSAGE = "errands fault: stalling at"  # what a stall writes to stderr first


@dataclass(frozen=True)
class Fault:
    probability: float
    stall_seconds: float | None = None  # None: SIGKILL
    times: int | None = None  # per process; None: no limit


_happened: Counter[str] = Counter()


@cache
def _plan(spec: str) -> dict[str, Fault]:
    plan: dict[str, Fault] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, *rest = item.split(":")
        probability = float(rest[0]) if rest and rest[0] else 1.0
        if len(rest) >= 3 and rest[1] == "stall":
            times = int(rest[3]) if len(rest) >= 4 else None
            plan[name] = Fault(probability, float(rest[2]), times)
        else:
            plan[name] = Fault(probability)
    return plan


def crash_point(name: str) -> None:
    """Maybe die here, as abruptly as the kernel's OOM killer would, or freeze here."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    plan = _plan(spec)
    fault = plan.get(name, plan.get("*"))
    if fault is None or not fault.probability or random.random() >= fault.probability:
        return
    if fault.times is not None and _happened[name] >= fault.times:
        return
    _happened[name] += 1
    if fault.stall_seconds is None:
        os.kill(os.getpid(), signal.SIGKILL)
    else:
        _stall(name, fault.stall_seconds)


def _stall(name: str, seconds: float) -> None:
    """Freeze every thread of this process (heartbeats too) for ``seconds``."""
    print(f"{STALL_MESSAGE} {name} for {seconds:g}s", file=sys.stderr, flush=True)
    # The waker outlives a SIGKILL of this process (its own session), harmlessly.
    subprocess.Popen(
        ["sh", "-c", f"sleep {seconds:g}; kill -CONT {os.getpid()} 2>/dev/null"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.kill(os.getpid(), signal.SIGSTOP)
