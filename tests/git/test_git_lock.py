"""Turns: a lock waited for with patience, for work that would otherwise race and retry."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from errands.errors import Cancelled
from errands.git.lock import turn


def test_a_turn_waits_for_the_holder_and_is_held_alone(tmp_path: Path) -> None:
    lock = tmp_path / "land.lock"
    order: list[str] = []
    held = threading.Event()

    def second() -> None:
        held.wait()
        with turn(lock, patience=30) as mine:
            order.append(f"second {mine}")

    other = threading.Thread(target=second)
    other.start()
    with turn(lock, patience=30) as mine:
        assert mine
        held.set()
        time.sleep(0.3)  # the other thread is waiting for its turn by now
        order.append("first")
    other.join(timeout=30)
    assert order == ["first", "second True"]


def test_a_holder_frozen_past_patience_is_gone_around(tmp_path: Path) -> None:
    """A worker stopped in its turn keeps the lock until it dies: the others go ahead
    without a turn (their own compare-and-swap still guards what they do)."""
    lock = tmp_path / "land.lock"
    with turn(lock, patience=1) as first:
        assert first
        started = time.monotonic()
        with turn(lock, patience=0.3) as second:
            assert second is False
        assert time.monotonic() - started >= 0.3
    with turn(lock, patience=0.3) as third:  # released when the holder's block ended
        assert third


def test_a_wait_for_a_turn_stops_when_its_check_raises(tmp_path: Path) -> None:
    """A cancelled job (or one whose lease was lost) stops waiting at once."""
    lock = tmp_path / "land.lock"
    cancel = threading.Event()

    def check() -> None:
        if cancel.is_set():
            raise Cancelled("The job was cancelled.")

    with turn(lock, patience=30) as first:
        assert first
        threading.Timer(0.2, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(Cancelled), turn(lock, patience=30, check=check):
            pytest.fail("got a turn that is held")
        assert time.monotonic() - started < 5
    with turn(lock, patience=0.3, check=check) as free:  # a free turn is taken, no check
        assert free
