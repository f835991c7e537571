"""The agent plants, with one run_command, every way it knows to make the git commands Errands
runs on the host (status, add, commit, diff, scrub, the review diff) run a program of its
choosing: a nested repository with an fsmonitor, hooks, a pager, an ssh command, an external
diff and filter drivers in its config; the same in the workspace's private git directory
(config.worktree, info/attributes, hooks, an include); a gitlink staged by hand in the index
the sandbox writes (which Errands never reads). Nothing may run on the host; the agent is told
that nested repositories are refused, removes them, and the task reaches review without a
gitlink in its history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from errands.sandbox import bwrap_problem
from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.conftest import run_git
from tests.support import CalcScript, events_of, phase_of, running_server, settings_for, to_review

pytestmark = pytest.mark.skipif(
    bwrap_problem() is not None, reason=f"bubblewrap is not usable here: {bwrap_problem()}"
)

REFUSED = "nested git repositor"


def plant(marker: Path) -> str:
    """A shell script planting every vector; each planted program appends to ``marker``, a
    host path the sandbox cannot write, so it only grows if a program ran on the host."""
    evil = f'#!/bin/sh\\necho "$0 $*" >> {marker}\\ncat\\n'
    config = """[core]
\tfsmonitor = $EVIL
\thooksPath = $GD/hooks
\tpager = $EVIL
\tsshCommand = $EVIL
\tattributesFile = $GD/info/attributes
[diff]
\texternal = $EVIL
[diff "evil"]
\ttextconv = $EVIL
[filter "evil"]
\tclean = $EVIL
\tsmudge = $EVIL
\trequired = true
[merge "evil"]
\tdriver = $EVIL
[extensions]
\tworktreeConfig = true
[include]
\tpath = $GD/included
[includeIf "gitdir:/"]
\tpath = $GD/included
"""
    hooks = (
        "pre-commit post-commit post-checkout post-merge post-index-change "
        "reference-transaction pre-push post-rewrite pre-auto-gc fsmonitor-watchman"
    )
    return f"""set -e
GD=$(git rev-parse --absolute-git-dir)
EVIL=$GD/evil
printf '{evil}' > $EVIL && chmod +x $EVIL
mkdir -p $GD/info $GD/hooks
for hook in {hooks}; do cp $EVIL $GD/hooks/$hook; done
cat > $GD/config.worktree <<EOF
{config}EOF
cp $GD/config.worktree $GD/config
cp $GD/config.worktree $GD/included
echo '* filter=evil diff=evil merge=evil' > $GD/info/attributes
git config extensions.worktreeConfig true 2>/dev/null || echo 'common config: read-only'
echo '* filter=evil diff=evil merge=evil' > .gitattributes
git init -q sub
cd sub
echo tracked > file.txt
git add file.txt
git -c user.name=x -c user.email=x@x commit -q -m x
cp $EVIL .git/evil
for hook in {hooks}; do cp $EVIL .git/hooks/$hook; done
cat $GD/config.worktree >> .git/config
sed -i "s|$GD|$PWD/.git|g" .git/config
echo '* filter=evil diff=evil merge=evil' > .gitattributes
touch file.txt
cd ..
git update-index --add --cacheinfo 160000,$(git -C sub rev-parse HEAD),gl
echo planted
"""


class PlantingScript(CalcScript):
    """Subtask 1 plants the vectors first; told its nested repositories are refused, it
    removes them; then it does its real work."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.steps = [Reply.call("run_command", command=plant(marker))]

    def __call__(self, req: ChatRequest) -> Reply:
        if phase_of(req) == "execute" and "subtask 1 of 2" in req.user:
            told = [text for name, text in req.tool_results if REFUSED in text]
            cleaned = any("cleaned" in text for _, text in req.tool_results)
            if req.n_assistant == 0:
                return self.steps[0]
            if told and not cleaned:
                return Reply.call(
                    "run_command", command="rm -rf sub && git rm -q --cached gl && echo cleaned"
                )
            req.n_assistant -= 2 if told else 1
        return super().__call__(req)


def test_nothing_the_agent_plants_runs_on_the_host(
    tmp_path: Path, home: Path, sample_repo: Path
) -> None:
    marker = tmp_path / "ran-on-the-host"
    script = PlantingScript(marker)
    with ScriptedLLM(script) as llm:
        settings = settings_for(home, llm.base_url, sandbox="bubblewrap")
        with running_server(settings) as url:
            client = httpx.Client(base_url=url, timeout=30)
            task_id, task = to_review(client, sample_repo)
            diff = client.get(f"/api/tasks/{task_id}/diff")
            events = events_of(client, task_id)
            assert llm.script_errors == []

    results: list[Any] = [
        e["data"]["content"]
        for e in events
        if e["kind"] == "agent.tool_result" and e["data"]["tool"] == "run_command"
    ]
    assert "planted" in results[0], results[0]
    # The agent heard at once that its nested repository is refused. Its gitlink staged by
    # hand is in the index the sandbox writes, which Errands never reads (see
    # errands.git.worktrees.private_index): no concern of the commit, nothing to refuse.
    assert results[0].startswith("Error:")
    assert REFUSED in results[0] and "sub" in results[0]
    assert [s["state"] for s in task["subtasks"]] == ["committed", "committed"]
    assert diff.status_code == 200
    # Nothing ran on the host, and no gitlink reached the task's history.
    assert not marker.exists(), marker.read_text()
    branch = task["branch"]
    tree = run_git(sample_repo, "ls-tree", "-r", branch)
    assert "160000" not in tree and "commit" not in tree.split()
    assert not marker.exists()
