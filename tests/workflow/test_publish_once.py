"""Each commit of a review round reaches origin once (issue 22): the round's head is the
last subtask's commit, already pushed, and a second push of it would only be another
network round trip per task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from errands.git.mirror import Mirror
from errands.testing.scripted_llm import ScriptedLLM
from tests.conftest import run_git
from tests.support import CalcScript, running_server, settings_for, to_review


def test_a_review_round_pushes_each_commit_once(
    sample_repo: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[tuple[str, str | None]] = []
    publish = Mirror.publish

    def counted(self: Mirror, branch: str, **kwargs: Any) -> str:
        # Observed, not replaced: the push itself is the real one.
        published.append((branch, kwargs.get("commit")))
        return publish(self, branch, **kwargs)

    monkeypatch.setattr(Mirror, "publish", counted)
    with ScriptedLLM(CalcScript()) as llm, running_server(settings_for(home, llm.base_url)) as url:
        client = httpx.Client(base_url=url, timeout=30)
        _, task = to_review(client, sample_repo)

    branch = task["branch"]
    heads = [subtask["commit_sha"] for subtask in task["subtasks"]]
    assert len(heads) == 2 and all(heads)
    assert published == [(branch, heads[0]), (branch, heads[1])]
    assert run_git(sample_repo, "rev-parse", f"refs/heads/{branch}").strip() == heads[1]
