"""Where an instance's repository comes from: a local mirror directory, or a clone from its
URL made once; each attempt's origin is `main` at the base commit and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from errands.evaluation.repos import EnvironmentFailure, Repositories
from tests.evaluation.synthetic import build, git


def test_mirrors_clones_and_origins(tmp_path: Path) -> None:
    dataset = build(tmp_path / "data", names=["calc"])
    mirrors = dataset.parent / "repos"
    base = git(mirrors / "acme__calc", "rev-parse", "HEAD").strip()

    local = Repositories(tmp_path / "cache", mirrors=mirrors, url_template="unused")
    assert local.source("acme/calc") == mirrors / "acme__calc"

    # Not in the mirror directory: cloned from its URL, once.
    cloning = Repositories(
        tmp_path / "cache", mirrors=tmp_path, url_template=f"file://{mirrors}/acme__calc"
    )
    clone = cloning.source("acme/calc")
    assert clone == tmp_path / "cache" / "acme__calc.git"
    assert cloning.source("acme/calc") == clone

    origin = cloning.origin(clone, base, tmp_path / "origins" / "calc-1.git")
    assert git(origin, "for-each-ref", "--format=%(refname) %(objectname)").split() == [
        "refs/heads/main",
        base,
    ]
    assert "sub" in git(origin, "show", "main:calc.py")  # the objects are borrowed

    with pytest.raises(EnvironmentFailure, match="is not in"):
        cloning.origin(clone, "f" * 40, tmp_path / "origins" / "x.git")
    missing = Repositories(tmp_path / "c2", mirrors=None, url_template=f"file://{tmp_path}/none")
    with pytest.raises(EnvironmentFailure, match="Could not clone"):
        missing.source("acme/none")
