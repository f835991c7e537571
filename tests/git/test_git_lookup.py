"""Revisions of a mirror looked up through one long-lived git: the answers of
``git rev-parse``, seen fresh after every change, without a process per lookup."""

from __future__ import annotations

import os
import resource
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from errands.errors import InvalidInput
from errands.git import Mirror, lookup
from errands.git.repo import resolve as resolve_by_process
from tests.git.git_helpers import commit_files, sh


@pytest.fixture(autouse=True)
def fresh_readers() -> Iterator[None]:
    lookup.close_all()
    yield
    lookup.close_all()


def _same_as_rev_parse(repo: Path, revs: list[str]) -> None:
    for rev in revs:
        assert lookup.resolve(repo, rev) == resolve_by_process(repo, rev), rev


def test_answers_as_rev_parse_does(mirror: Mirror, user_repo: Path) -> None:
    main = mirror.resolve("refs/remotes/origin/main")
    assert main is not None
    sh(user_repo, "tag", "-a", "-m", "release", "v1")
    blob = sh(user_repo, "hash-object", "-w", "--stdin", input=b"not a commit\n").strip()
    sh(user_repo, "update-ref", "refs/tags/blob", blob)
    mirror.fetch()
    sh(mirror.path, "fetch", "--quiet", str(user_repo), "refs/tags/*:refs/tags/*")
    # A remote can send any object under a branch's name; only a commit is one.
    sh(mirror.path, "update-ref", "refs/remotes/origin/odd", blob)
    _same_as_rev_parse(
        mirror.path,
        [
            "refs/remotes/origin/main",
            "refs/remotes/origin/odd",
            "refs/tags/v1",  # an annotated tag, peeled to its commit
            "refs/tags/blob",
            main,
            main[:12],
            "0" * 40,
            "refs/heads/nothing",
            "origin/main",
            "main",  # nothing under refs/heads in a fresh mirror
            "refs/remotes/origin/main~1",
            "refs/remotes/origin/main:README.md",  # a blob: not a commit
            "refs/remotes/origin/main..x",
        ],
    )
    assert (
        lookup.peel(mirror.path, main, "tree")
        == sh(mirror.path, "rev-parse", f"{main}^{{tree}}").strip()
    )
    with pytest.raises(InvalidInput):
        lookup.resolve(mirror.path, "--output=/tmp/x")


def test_sees_every_change_made_after_it_started(mirror: Mirror, user_repo: Path) -> None:
    first = lookup.resolve(mirror.path, "refs/remotes/origin/main")
    assert first is not None
    assert lookup.resolve(mirror.path, "refs/heads/errands/1-a") is None
    # A new branch (loose ref), then a commit fetched in a new pack.
    sh(mirror.path, "update-ref", "refs/heads/errands/1-a", first)
    assert lookup.resolve(mirror.path, "refs/heads/errands/1-a") == first
    second = commit_files(user_repo, {"new.txt": "new\n"}, "second")
    mirror.fetch()
    assert lookup.resolve(mirror.path, "refs/remotes/origin/main") == second
    assert lookup.resolve(mirror.path, second) == second
    # Refs packed, then moved and deleted again.
    sh(mirror.path, "pack-refs", "--all", "--prune")
    assert lookup.resolve(mirror.path, "refs/heads/errands/1-a") == first
    sh(mirror.path, "update-ref", "refs/heads/errands/1-a", second)
    assert lookup.resolve(mirror.path, "refs/heads/errands/1-a") == second
    sh(mirror.path, "update-ref", "-d", "refs/heads/errands/1-a")
    assert lookup.resolve(mirror.path, "refs/heads/errands/1-a") is None
    # Objects repacked and the loose ones pruned under it.
    sh(mirror.path, "gc", "--quiet", "--prune=now")
    assert lookup.resolve(mirror.path, "refs/remotes/origin/main") == second
    assert lookup.resolve(mirror.path, first) == first


def test_one_process_answers_every_lookup_of_a_mirror(
    mirror: Mirror, git_starts: list[list[str]]
) -> None:
    for _ in range(20):
        assert mirror.resolve("refs/remotes/origin/main") is not None
        assert mirror.resolve("refs/heads/absent") is None
    assert [args[0] for args in git_starts] == ["cat-file"]


def test_an_old_reader_is_replaced(
    mirror: Mirror, git_starts: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It holds the pack files it read: a new one lets a gc's replaced packs go."""
    assert mirror.resolve("refs/remotes/origin/main") is not None
    (first,) = lookup._registry.readers.values()
    monkeypatch.setattr(lookup, "MAX_AGE", 0.0)
    assert mirror.resolve("refs/remotes/origin/main") is not None
    assert first.closed
    assert first.proc.returncode is not None
    assert [args[0] for args in git_starts] == ["cat-file", "cat-file"]


def test_what_cannot_travel_on_one_line_goes_to_rev_parse(
    mirror: Mirror, git_starts: list[list[str]]
) -> None:
    for rev in ("refs/remotes/origin/main\nrefs/heads/x", "refs/remotes/origin/main x", "é"):
        assert lookup.resolve(mirror.path, rev) == resolve_by_process(mirror.path, rev)
    assert all(args[0] == "rev-parse" for args in git_starts)


def test_a_dead_reader_is_replaced(mirror: Mirror, git_starts: list[list[str]]) -> None:
    main = mirror.resolve("refs/remotes/origin/main")
    (reader,) = lookup._registry.readers.values()
    os.kill(reader.proc.pid, signal.SIGKILL)
    reader.proc.wait()
    # The lookup that finds it dead asks rev-parse; the next one has a new reader.
    assert mirror.resolve("refs/remotes/origin/main") == main
    assert mirror.resolve("refs/remotes/origin/main") == main
    assert [args[0] for args in git_starts] == ["cat-file", "rev-parse", "cat-file"]


def test_a_mirror_made_again_at_the_same_path_is_read_afresh(
    tmp_path: Path, make_repo: Any
) -> None:
    path = tmp_path / "data" / "again.git"
    one = make_repo("one", {"a.txt": "one\n"})
    two = make_repo("two", {"a.txt": "two\n"})
    first = Mirror.create(path, str(one)).resolve("refs/remotes/origin/main")
    shutil.rmtree(path)
    second = Mirror.create(path, str(two)).resolve("refs/remotes/origin/main")
    assert first != second
    assert second == sh(two, "rev-parse", "HEAD").strip()


def test_readers_are_bounded(tmp_path: Path, make_repo: Any) -> None:
    origin = make_repo()
    mirrors = [
        Mirror.create(tmp_path / "data" / f"m{i}.git", str(origin))
        for i in range(lookup.MAX_READERS + 2)
    ]
    for mirror in mirrors:
        assert mirror.resolve("refs/remotes/origin/main") is not None
    assert len(lookup._registry.readers) == lookup.MAX_READERS


def test_a_reader_works_past_a_thousand_open_files(mirror: Mirror) -> None:
    """A server holds many sockets and files: the reader's pipe may be descriptor 2000."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2100:
        pytest.skip("cannot open 2,000 files here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2100), hard))
    held: list[int] = []
    try:
        while not held or held[-1] < 2000:
            held.append(os.open(os.devnull, os.O_RDONLY))
        assert mirror.resolve("refs/remotes/origin/main") == resolve_by_process(
            mirror.path, "refs/remotes/origin/main"
        )
        (reader,) = lookup._registry.readers.values()
        assert reader.fd > 1024
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
