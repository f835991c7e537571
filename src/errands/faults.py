"""Crash points for chaos testing: places where a worker may be SIGKILLed on purpose.

The durable-jobs promise is that a worker killed anywhere loses nothing and duplicates
nothing. Random outside kills rarely land in the narrow windows that matter most (between a
commit and recording it, between landing a merge and marking the task merged), so the
chaos tests also name those windows here. ``ERRANDS_CRASH_POINTS`` is a comma-separated list
of ``name:probability`` (``*`` matches every point); unset, as in production, a crash point
is one dictionary lookup.
"""

from __future__ import annotations

import os
import random
import signal
from functools import cache

ENV = "ERRANDS_CRASH_POINTS"


@cache
def _plan(spec: str) -> dict[str, float]:
    plan: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, probability = item.partition(":")
        plan[name] = float(probability or 1.0)
    return plan


def crash_point(name: str) -> None:
    """Maybe die here, as abruptly as the kernel's OOM killer would."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    plan = _plan(spec)
    probability = plan.get(name, plan.get("*", 0.0))
    if probability and random.random() < probability:
        os.kill(os.getpid(), signal.SIGKILL)
