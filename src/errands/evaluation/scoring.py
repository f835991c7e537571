"""Scoring in the sandbox: the instance's hidden tests against what the workflow produced.

Both steps work in a workspace of the project's own pool, under the same sandbox policies
as a job (setup may write the package caches and, when the project allows, reach the
network; tests never do): the environment check runs the setup commands at the base commit
before any model is called; scoring applies the ``test_patch`` to the task branch inside the
sandbox, runs setup again, then the FAIL_TO_PASS and PASS_TO_PASS tests.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from errands.errors import ErrandsError
from errands.evaluation.dataset import Instance
from errands.evaluation.repos import EnvironmentFailure
from errands.git import Workspace, git
from errands.sandbox import Sandbox, create_sandbox
from errands.settings import Settings
from errands.store import Database, Project
from errands.workflow.mirrors import open_mirror, pool_for
from errands.workflow.project_config import EffectiveConfig, effective_config
from errands.workflow.workspaces import CACHE_VARIABLES, policies

# pytest -rA: one line per test in the short summary, e.g. "PASSED tests/x.py::test_y".
_RESULT_LINE = re.compile(r"^(PASSED|XFAIL|FAILED|ERROR|XPASS|SKIPPED) (\S+)", re.MULTILINE)
_PASSING = {"PASSED", "XFAIL"}
# Test runs print every test's name: keep far more of their output than an agent sees.
SCORING_OUTPUT_CHARS = 2_000_000
OUTPUT_TAIL = 4_000  # characters of a failing step's output kept in the results


@dataclass(frozen=True)
class Score:
    applied: bool
    tests: dict[str, bool] = field(default_factory=dict)  # test → passed
    detail: str = ""
    output_tail: str = ""

    def passed(self, names: tuple[str, ...]) -> list[str]:
        return [n for n in names if self.tests.get(n)]


@dataclass(frozen=True)
class _Scene:
    workspace: Workspace
    setup: Sandbox
    work: Sandbox
    config: EffectiveConfig
    cancel: threading.Event  # the run is stopping: commands are killed


def check_environment(
    settings: Settings, db: Database, project_id: int, commit: str, cancel: threading.Event
) -> None:
    """Run the setup commands at ``commit`` (EnvironmentFailure when one fails)."""
    with _scene(settings, db, project_id, commit, "env", cancel) as scene:
        _setup(scene)


def score(
    settings: Settings,
    db: Database,
    project_id: int,
    tip: str,
    instance: Instance,
    cancel: threading.Event,
) -> Score:
    with _scene(settings, db, project_id, tip, "score", cancel) as scene:
        applied = _apply(scene, instance.test_patch)
        if not applied.ok:
            return Score(
                applied=False,
                detail="the test patch did not apply to the task branch",
                output_tail=applied.output[-OUTPUT_TAIL:],
            )
        _setup(scene)
        return _run_tests(scene, instance)


@contextmanager
def _scene(
    settings: Settings,
    db: Database,
    project_id: int,
    commit: str,
    purpose: str,
    cancel: threading.Event,
) -> Iterator[_Scene]:
    with db.session() as session:
        project = session.get_one(Project, project_id)
        config = effective_config(project, settings)
        origin = project.origin
    config = replace(config, limits=replace(config.limits, output_chars=SCORING_OUTPUT_CHARS))
    mirror = open_mirror(settings, project_id, origin)
    pool = pool_for(settings, mirror, project_id)
    # A branch of its own per use, so no job's branch is moved or checked out here.
    name = f"eval-{purpose}-{secrets.token_hex(6)}"
    workspace = pool.acquire(name, f"errands-eval/{name}", commit)
    try:
        cache = settings.home / "cache" / f"project-{project_id}"
        for sub in CACHE_VARIABLES.values():
            (cache / sub).mkdir(parents=True, exist_ok=True)
        setup_policy, work_policy = policies(settings, mirror, workspace, cache, config)
        yield _Scene(
            workspace,
            create_sandbox(config.backend, setup_policy),
            create_sandbox(config.backend, work_policy),
            config,
            cancel,
        )
    finally:
        pool.release(workspace)
        git("branch", "-D", "--quiet", f"errands-eval/{name}", cwd=mirror.path, check=False)


def _setup(scene: _Scene) -> None:
    for command in scene.config.setup_commands:
        result = scene.setup.run(
            command,
            timeout=scene.config.command_timeout,
            network=scene.config.setup_network,
            cancel=scene.cancel,
        )
        if not result.ok:
            raise EnvironmentFailure(
                f"The setup command {command!r} failed ({result.describe()}): "
                f"{result.output[-OUTPUT_TAIL:]}"
            )


class _Applied:
    def __init__(self, ok: bool, output: str) -> None:
        self.ok, self.output = ok, output


def _apply(scene: _Scene, patch: str) -> _Applied:
    """``git apply`` inside the sandbox. The patch file is created exclusively under a random
    name at the top of the tree (a name the agent's commits cannot have planted a link at)
    and removed before any test runs."""
    name = f".errands-eval-{secrets.token_hex(8)}.patch"
    try:
        fd = os.open(
            scene.workspace.path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644
        )
    except OSError as exc:
        raise ErrandsError(f"Could not write the test patch into the workspace: {exc}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as sink:
        sink.write(patch)
    quoted = shlex.quote(name)
    result = scene.work.run(
        f"git apply --whitespace=nowarn {quoted}; status=$?; rm -f {quoted}; exit $status",
        timeout=scene.config.command_timeout,
        cancel=scene.cancel,
    )
    return _Applied(result.ok, result.output)


def _run_tests(scene: _Scene, instance: Instance) -> Score:
    names = (*instance.fail_to_pass, *instance.pass_to_pass)
    template = instance.environment.test_command
    if not names:
        return Score(applied=True, detail="the instance names no tests")
    if "{tests}" in template:
        command = template.replace("{tests}", " ".join(shlex.quote(n) for n in names))
        result = scene.work.run(command, timeout=scene.config.command_timeout, cancel=scene.cancel)
        seen: dict[str, bool] = {}
        for outcome, test in _RESULT_LINE.findall(result.output):
            # A test listed twice (a rerun) passes only if every run passed.
            seen[test] = seen.get(test, True) and outcome in _PASSING
        tests = {n: seen.get(n, False) for n in names}
        detail = "" if not result.timed_out else f"the test run {result.describe()}"
        return Score(applied=True, tests=tests, detail=detail, output_tail=_tail(result.output))
    tests, tails = {}, []
    for test in names:
        result = scene.work.run(
            template.replace("{test}", shlex.quote(test)),
            timeout=scene.config.command_timeout,
            cancel=scene.cancel,
        )
        tests[test] = result.ok
        if not result.ok:
            tails.append(f"$ {test}: {result.describe()}\n{result.output[-1000:]}")
    return Score(applied=True, tests=tests, output_tail=_tail("\n".join(tails)))


def _tail(text: str) -> str:
    return text[-OUTPUT_TAIL:]
