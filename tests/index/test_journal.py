"""A save after an update appends what it changed to the saved index's journal; a load
replays it. A torn or damaged record, a journal beside a base it does not follow and two
writers saving at once each leave a readable index equal to a fresh build of some commit
the index was saved at — never a mix.

A small repository's index is small: the tests let its journal grow past the share of it
(:data:`~errands.index.core.JOURNAL_SHARE`) a large one's may reach."""

from __future__ import annotations

import shutil
from pathlib import Path

from errands.git import Mirror
from errands.index import CodeIndex, journal
from errands.settings import Settings
from errands.workflow.code_index import index_path, load_index, refresh_index
from tests.index.conftest import Commit
from tests.index.test_incremental import assert_same

SHARE = 100.0


def _history(commit: Commit) -> list[str]:
    """Four commits: a package, then one file edited, one added, one deleted."""
    return [
        commit(
            {
                "pkg/cart.py": "class Cart:\n    def total(self, xs):\n        return sum(xs)\n",
                "pkg/price.py": "def round_price(x):\n    return round(x, 2)\n",
                "README.md": "The cart and its prices.\n",
            }
        ),
        commit({"pkg/price.py": "def round_price(x, places=2):\n    return round(x, places)\n"}),
        commit({"pkg/discount.py": "def apply_discount(price, rate):\n    return price * rate\n"}),
        commit({"README.md": None}),
    ]


def _saved_through(repo: Path, shas: list[str], path: Path) -> list[journal.Identity]:
    """Build at the first commit and save, then update to each next one and save (each an
    append); the identities the saves returned."""
    index = CodeIndex.build(repo / ".git", shas[0])
    identities = [index.save(path)]
    for sha in shas[1:]:
        index.update(repo / ".git", sha)
        identities.append(index.save(path, journal_share=SHARE))
    return identities


def test_a_save_after_an_update_appends_to_the_journal_and_a_load_replays_it(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    shas = _history(commit)
    path = tmp_path / "project.idx"
    identities = _saved_through(repo, shas, path)
    assert identities[0][3:] == journal.NO_JOURNAL  # a cold build: saved whole
    # Then the base stays (the same file) and the journal grows, one record per save.
    assert {i[:3] for i in identities} == {identities[0][:3]}
    sizes = [i[5] for i in identities]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert identities[-1] == journal.identity(path)
    assert len(list(journal.records(journal.read(path)[0]))) == len(shas) - 1
    loaded = CodeIndex.load(path)
    assert_same(loaded, CodeIndex.build(repo / ".git", shas[-1]))


def test_the_journal_is_bounded_and_then_the_index_is_saved_whole(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    shas = _history(commit)
    path = tmp_path / "project.idx"
    index = CodeIndex.build(repo / ".git", shas[0])
    index.save(path)
    saved = []
    for sha in shas[1:]:
        index.update(repo / ".git", sha)
        saved.append(index.save(path, journal_share=SHARE, journal_records=2))
    assert [i[3:] == journal.NO_JOURNAL for i in saved] == [False, False, True]
    assert not journal.journal_path(path).exists()
    assert_same(CodeIndex.load(path), CodeIndex.build(repo / ".git", shas[-1]))
    # And by size: a journal that would pass a share of the base.
    index.update(repo / ".git", shas[0])
    assert index.save(path, journal_share=1e-9)[3:] == journal.NO_JOURNAL
    assert_same(CodeIndex.load(path), CodeIndex.build(repo / ".git", shas[0]))


def test_a_torn_or_damaged_last_record_is_left_out_and_the_next_save_is_whole(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    """A crash in the middle of an append: the index read back is the one saved before it
    (an earlier commit's, equal to a fresh build of that commit), and the next save after
    an update replaces base and journal."""
    shas = _history(commit)
    path = tmp_path / "project.idx"
    _saved_through(repo, shas, path)
    whole, _ = journal.read(path)
    last = list(journal.records(whole))[-1]
    # A bit flipped where the record still unpickles: a digit of the commit it names.
    at = whole.index(shas[-1].encode(), last[0]) + 3
    for damaged in (
        whole[: last[1] - 1],  # torn: its last byte never written
        whole[: last[0]] + b"\0" * 9,  # torn in its header
        whole[:at] + bytes([whole[at] ^ 1]) + whole[at + 1 :],
    ):
        journal.journal_path(path).write_bytes(damaged)
        loaded = CodeIndex.load(path)
        assert loaded.commit == shas[-2]
        assert_same(loaded, CodeIndex.build(repo / ".git", shas[-2]))
    loaded.update(repo / ".git", shas[-1])
    # The damaged tail is not built on.
    assert loaded.save(path, journal_share=SHARE)[3:] == journal.NO_JOURNAL
    assert_same(CodeIndex.load(path), CodeIndex.build(repo / ".git", shas[-1]))


def test_a_journal_beside_a_newer_base_is_not_applied(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    """A crash between a whole save's rename and its journal's removal leaves the old
    journal beside the new base: its records follow the old base, so none is applied."""
    shas = _history(commit)
    path = tmp_path / "project.idx"
    _saved_through(repo, shas[:3], path)
    stale = tmp_path / "stale.journal"
    shutil.copyfile(journal.journal_path(path), stale)
    CodeIndex.build(repo / ".git", shas[0]).save(path)  # another writer, whole
    shutil.copyfile(stale, journal.journal_path(path))
    loaded = CodeIndex.load(path)
    assert_same(loaded, CodeIndex.build(repo / ".git", shas[0]))


def test_two_writers_from_one_saved_index_never_interleave(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    """Two processes read the same saved index and update it to different commits: the
    first appends, the second finds the journal moved on and saves whole; the saved index
    is the second's, and the first's identity no longer matches it."""
    shas = _history(commit)
    path = tmp_path / "project.idx"
    CodeIndex.build(repo / ".git", shas[0]).save(path)
    first, second = CodeIndex.load(path), CodeIndex.load(path)
    first.update(repo / ".git", shas[1])
    first_id = first.save(path, journal_share=SHARE)
    assert first_id[3:] != journal.NO_JOURNAL
    second.update(repo / ".git", shas[2])
    second_id = second.save(path, journal_share=SHARE)
    assert second_id[3:] == journal.NO_JOURNAL
    assert journal.identity(path) == second_id != first_id
    assert_same(CodeIndex.load(path), CodeIndex.build(repo / ".git", shas[2]))
    # The first, saving again, cannot append to the second's index either.
    first.update(repo / ".git", shas[3])
    assert first.save(path, journal_share=SHARE)[3:] == journal.NO_JOURNAL
    assert_same(CodeIndex.load(path), CodeIndex.build(repo / ".git", shas[3]))


def test_the_index_job_appends_and_readers_see_each_save(
    repo: Path, commit: Commit, tmp_path: Path
) -> None:
    """Through refresh_index: a one-file update is appended, the refreshed index is what
    this process's readers get, and another process's reader reads the new state."""
    settings = Settings(home=tmp_path / "home")
    mirror = Mirror(repo / ".git")
    shas = _history(commit)
    _, changed = refresh_index(settings, 9, mirror, shas[0])
    assert changed is None
    path = index_path(settings, 9)
    base = journal.identity(path)
    assert base is not None
    held = load_index(settings, 9)
    assert held is not None
    updated, changed = refresh_index(settings, 9, mirror, shas[1])
    assert changed == ["pkg/price.py"]
    # The index this process held was updated as a fork: its readers still have it as it was.
    assert updated is not held and held.commit == shas[0]
    assert_same(held, CodeIndex.build(repo / ".git", shas[0]))
    now = journal.identity(path)
    assert now is not None and now[:3] == base[:3] and now[3:] != journal.NO_JOURNAL
    assert load_index(settings, 9) is updated
    assert_same(CodeIndex.load(path), CodeIndex.build(repo / ".git", shas[1]))
