"""The value bounds every boundary (the API, the pages, their forms) holds numbers to, declared
once so no route can forget them.

Ids, cursors, line numbers and positions are stored as 64-bit signed integers (SQLite's
INTEGER, PostgreSQL's BIGINT): a larger number can be neither stored nor even looked up (the
SQLite driver raises ``OverflowError``), so it is refused as bad input before it reaches the
store. Amounts of money are finite: NaN and infinity are not amounts, and ``round(nan)`` fails.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator, Field

from errands.errors import InvalidInput
from errands.ids import MAX_INT

MAX_BUDGET_USD = 1_000_000.0
MAX_PRICE_PER_MTOK = 10_000.0

# A row id, a line number, a position in a list: 1 and up.
Id = Annotated[int, Field(ge=1, le=MAX_INT)]
# A cursor (``after``: the last id already seen; 0 is "from the start") or an index: 0 and up.
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
# US dollars: a budget cap, or a price per million tokens.
BudgetUsd = Annotated[float, Field(ge=0, le=MAX_BUDGET_USD, allow_inf_nan=False)]
PricePerMTok = Annotated[float, Field(ge=0, le=MAX_PRICE_PER_MTOK, allow_inf_nan=False)]

# What `locate` is asked (the API, the MCP tool): a traceback or an issue can be long, but
# past this it is no question anyone types; and how many files it answers with.
LOCATE_TEXT_MAX = 65_536


def _locate_text(value: str) -> str:
    if not value.strip():
        raise ValueError("the text is blank: give a task, an issue or a traceback")
    return value


LocateText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=LOCATE_TEXT_MAX,
        description="A task, an issue, a traceback (at most 65,536 characters).",
    ),
    AfterValidator(_locate_text),
]
LocateLimit = Annotated[int, Field(ge=1, le=100, description="How many files (1-100).")]


def parse_int(value: str, what: str, *, minimum: int = 1) -> int | None:
    """A number typed in a form field (or a header), or None when it is empty. ASCII digits only
    (``"²".isdigit()`` is true, but ``int("²")`` fails), within ``minimum``..``MAX_INT``."""
    value = value.strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise InvalidInput(f"{what} must be a number, not {value[:40]!r}.")
    number = int(value)
    if not minimum <= number <= MAX_INT:
        raise InvalidInput(f"{what} must be between {minimum} and {MAX_INT}, not {value[:40]}.")
    return number


def finite_dollars(value: float, what: str, maximum: float) -> float:
    """An amount of dollars between 0 and ``maximum``: the service-level twin of the schema
    types above, for callers that did not come through a schema (the pages' forms)."""
    if not (math.isfinite(value) and 0 <= value <= maximum):
        raise InvalidInput(f"{what} is an amount of US dollars between 0 and {maximum:,.0f}.")
    return value
