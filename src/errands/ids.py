"""Ids as the store holds them (64-bit signed integers), without pydantic: for code that must
start fast (`errands locate`); :mod:`errands.limits` holds the rest of the bounds."""

from __future__ import annotations

MAX_INT = 2**63 - 1


def id_in(value: str) -> int | None:
    """The id a string of digits names, or None when it names none any store can hold (too
    large, or digits ``int()`` does not read: ``"²".isdigit()`` is true)."""
    if not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if number <= MAX_INT else None
