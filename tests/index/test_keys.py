"""Packed document keys (errands.index.keys) behave as the list and dict they replace:
ids by key and keys by id through removals, re-additions and a save and load."""

from __future__ import annotations

import pickle

from errands.index.keys import ChunkKeys, Keys


def test_keys_by_id_and_ids_by_key_through_removal_and_re_adding() -> None:
    keys = Keys(["a.py", "b.py\x000", "b.py\x001", "", "c/d.py"])
    assert len(keys) == 5
    assert [keys[i] for i in range(5)] == ["a.py", "b.py\x000", "b.py\x001", "", "c/d.py"]
    assert [keys.id_of(k) for k in ["a.py", "b.py\x001", "", "c/d.py"]] == [0, 2, 3, 4]
    assert keys.id_of("b.py") is None and keys.id_of("nowhere") is None
    keys.remove(1)
    assert keys[1] is None and keys.id_of("b.py\x000") is None
    assert keys.append("b.py\x000") == 5  # a new id: ids are never reused
    assert keys.id_of("b.py\x000") == 5
    keys.remove(5)
    assert keys.id_of("b.py\x000") is None
    assert keys == ["a.py", None, "b.py\x001", "", "c/d.py", None]


def test_saved_and_read_back_it_finds_the_same_ids() -> None:
    keys = Keys(f"pkg/m{i}.py\x00{j}" for i in range(50) for j in range(3))
    keys.remove(7)
    keys.append("new.py")
    back = pickle.loads(pickle.dumps(keys))
    assert back == keys
    assert all(back.id_of(k) == keys.id_of(k) for k in keys if k is not None)
    assert back.id_of("new.py") == 150 and back.id_of("pkg/m2.py\x001") is None


def test_keys_that_are_not_ascii_read_back_as_they_were() -> None:
    """Packed as UTF-8: a path with accents, and one git gave with bytes that are not
    UTF-8 (decoded with surrogate escapes), come back equal and are found."""
    odd = ["naïve/café.py", "raw/\udcff\udc80.py\x002", "日本/x.py"]
    for keys in (Keys(odd), pickle.loads(pickle.dumps(Keys(odd)))):
        assert list(keys) == odd
        assert [keys.id_of(k) for k in odd] == [0, 1, 2]


def test_chunk_keys_made_from_paths_behave_as_the_keys_packed() -> None:
    paths, counts = ["a.py", "b/ü.py", "empty.md", "c.py"], [2, 3, 0, 1]
    listed = [f"{p}\x00{i}" for p, n in zip(paths, counts, strict=True) for i in range(n)]
    chunks, packed = ChunkKeys(paths, counts), Keys(listed)
    for keys in (chunks, pickle.loads(pickle.dumps(chunks))):
        assert list(keys) == list(packed) == listed
        assert [keys[i] for i in range(len(listed))] == listed
        assert [keys.id_of(k) for k in listed] == list(range(len(listed)))
        assert keys.id_of("empty.md\x000") is None and keys.id_of("a.py\x002") is None
        assert keys.id_of("a.py\x00") is None and keys.id_of("a.py") is None
    fork = chunks.fork()
    fork.remove(3)
    assert fork.append("b/ü.py\x001") == 6 and fork.id_of("b/ü.py\x001") == 6
    assert chunks.id_of("b/ü.py\x001") == 3 and list(chunks) == listed  # untouched
    assert ChunkKeys([], []) == []
