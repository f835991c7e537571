"""An overlay dict (errands.index.overlay) behaves as a dict through sets, deletes and its
changes folded into a new base, and a fork and the overlay it came from change apart."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from errands.index import overlay
from errands.index.overlay import Overlay

NAMES = [f"k{i}" for i in range(12)]
KEYS = st.sampled_from(NAMES)
# (which copy, set or delete, key, value); a fork is taken between steps
STEPS = st.lists(
    st.tuples(st.integers(0, 3), st.booleans(), KEYS, st.integers(0, 5), st.booleans()),
    max_size=60,
)


@pytest.fixture(autouse=True)
def _fold_early(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fold after a few changes, so the steps go through several bases.
    monkeypatch.setattr(overlay, "FLATTEN_MIN", 3)


@given(start=st.dictionaries(KEYS, st.integers(0, 5)), steps=STEPS)
def test_forks_change_apart_and_each_acts_as_a_dict(
    start: dict[str, int], steps: list[tuple[int, bool, str, int, bool]]
) -> None:
    copies = [Overlay(dict(start))]
    models = [dict(start)]
    for which, put, key, value, fork in steps:
        i = which % len(copies)
        mine, model = copies[i], models[i]
        if put:
            mine[key] = value
            model[key] = value
        elif key in model:
            del mine[key]
            del model[key]
        else:
            with pytest.raises(KeyError):
                del mine[key]
        if fork:
            copies.append(mine.fork())
            models.append(dict(model))
        for c, m in zip(copies, models, strict=True):
            assert len(c) == len(m) and dict(c.items()) == m and c == m
            assert set(c) == set(m) and sorted(c.keys()) == sorted(m)
            assert all(c.get(k) == m.get(k) and (k in c) == (k in m) for k in NAMES)
            assert c.get("nowhere", -1) == -1


def test_it_pickles_and_copies_as_its_contents() -> None:
    table = Overlay({"a": 1, "b": 2})
    table["c"] = 3
    del table["a"]
    for back in (pickle.loads(pickle.dumps(table)), copy.deepcopy(table)):
        assert isinstance(back, Overlay) and back == {"b": 2, "c": 3}


def test_a_fork_leaves_the_base_it_shares_as_it_was() -> None:
    base = {"a": 1, "b": 2}
    table = Overlay(base)
    fork = table.fork()
    for i in range(10):  # past the fold threshold: a new base, the shared one untouched
        fork[f"n{i}"] = i
    del fork["a"]
    assert base == {"a": 1, "b": 2} and table == base
    assert fork == {"b": 2, **{f"n{i}": i for i in range(10)}}
