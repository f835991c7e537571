"""`errands eval` end to end through the CLI, with the scripted model: a synthetic dataset
(tests/evaluation/synthetic.py) of one instance the agent resolves, one it does not, and one
whose environment cannot be built; a crash mid-run resumes without redoing what is done; the
summary agrees with the JSONL; --budget stops the run before a call past it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from errands.sandbox import bwrap_problem
from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.evaluation.synthetic import build
from tests.support import final, phase_of, wait_for

ERRANDS = [sys.executable, "-m", "errands.cli"]
CALC_MARK, WORDS_MARK = "sub(5, 3)", "count('two words')"


class EvalScript:
    """calc: research asks one question (recommending option 2), then a correct fix.
    words: no question, a wrong fix. The first words request can be held back, so the test
    can kill the run while words is in flight."""

    def __init__(self, *, hold_words: threading.Event | None = None) -> None:
        self.hold_words = hold_words
        self.requests: list[tuple[str, str]] = []  # (instance, phase)
        self.lock = threading.Lock()

    def __call__(self, req: ChatRequest) -> Reply:
        phase = phase_of(req)
        which = "calc" if CALC_MARK in req.user else "words" if WORDS_MARK in req.user else "?"
        with self.lock:
            self.requests.append((which, phase))
        if which == "words" and self.hold_words is not None:
            self.hold_words.wait(60)  # until the test has killed the run
        step = req.n_assistant
        if phase == "research":
            questions = []
            if which == "calc":
                questions = [
                    {
                        "question": "Should sub also accept strings?",
                        "reasoning": "Decides the scope of the fix.",
                        "options": [
                            {"label": "Yes", "requirement": "sub handles strings"},
                            {"label": "No", "requirement": "sub is for numbers only"},
                        ],
                        "recommended": 2,
                    }
                ]
            return [
                Reply.call("read_file", path="calc.py" if which == "calc" else "words.py"),
                final(
                    overview=f"{which} is a one-module library.",
                    requirements=["Fix the bug the issue reports"],
                    relevant_files=[{"path": f"{which}.py", "reason": "the function"}],
                    risks=[],
                    questions=questions,
                ),
            ][min(step, 1)]
        if phase == "plan":
            return final(subtasks=[{"title": "Fix it", "steps": ["Edit the function"]}],
                         out_of_scope=[])  # fmt: skip
        if phase == "execute" and which == "calc":
            return [
                Reply.call("edit_file", path="calc.py",
                           old_text="def sub(a, b):\n    return a + b\n",
                           new_text="def sub(a, b):\n    return a - b\n"),
                final(summary="sub subtracts.", decisions=[]),
            ][min(step, 1)]  # fmt: skip
        if phase == "execute" and which == "words":
            return [
                Reply.call("edit_file", path="words.py", old_text="    return len(s)\n",
                           new_text="    return len(s.split(','))\n"),
                final(summary="count splits the sentence.", decisions=[]),
            ][min(step, 1)]  # fmt: skip
        raise AssertionError(f"unexpected request: {which} {phase}")

    def count(self, which: str, phase: str | None = None) -> int:
        with self.lock:
            return sum(w == which and (phase is None or p == phase) for w, p in self.requests)


def env_for(llm: ScriptedLLM, home: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ERRANDS_", "OPENAI_"))},
        # The run keeps its own store under --out; this home must stay untouched.
        "ERRANDS_HOME": str(home),
        "ERRANDS_MODEL": "openai:scripted-model",
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-eval-secret-456789",
        "ERRANDS_WORKER_POLL_INTERVAL": "0.05",
        "ERRANDS_SANDBOX": "auto" if bwrap_problem() is None else "none",
    }


def eval_args(root: Path, dataset: Path, out: Path, *extra: str) -> list[str]:
    return [
        *ERRANDS, "eval", str(dataset), "--repos", str(root / "repos"),
        "--environments", str(root / "environments.toml"), "--out", str(out), *extra,
    ]  # fmt: skip


def start_run(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.Popen[bytes]:
    with (tmp_path / "run.log").open("w") as log:
        return subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def results_of(out: Path) -> dict[str, dict[str, Any]]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return {r["instance_id"]: r for r in map(json.loads, lines)}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return build(tmp_path / "data")


def test_a_run_resolves_fails_and_reports_environments_and_resumes_after_a_crash(
    dataset: Path, tmp_path: Path
) -> None:
    root, out, home = dataset.parent, tmp_path / "out", tmp_path / "home"
    script = EvalScript()
    with ScriptedLLM(script) as llm:
        env = env_for(llm, home)
        # Ctrl-C while words is in flight: calc is kept, words has no result.
        script.hold_words = threading.Event()
        interrupted = start_run(eval_args(root, dataset, out, "--timeout", "120"), env, tmp_path)
        try:
            wait_for(lambda: script.count("words") > 0, timeout=120, what="words in flight")
            interrupted.send_signal(signal.SIGINT)
            script.hold_words.set()
            assert interrupted.wait(120) == 130
        finally:
            stop(interrupted)
        assert list(results_of(out)) == ["acme__calc-1"]
        assert "Interrupted. Finished instances are kept" in (tmp_path / "run.log").read_text()

        # A crash (SIGKILL) while words is in flight again.
        script.hold_words = threading.Event()
        words_before = script.count("words")
        crashed = start_run(eval_args(root, dataset, out, "--timeout", "120"), env, tmp_path)
        try:
            wait_for(lambda: script.count("words") > words_before, timeout=120, what="words")
            os.killpg(crashed.pid, signal.SIGKILL)
            crashed.wait(30)
        finally:
            script.hold_words.set()
            stop(crashed)
        assert list(results_of(out)) == ["acme__calc-1"]
        calc_requests = script.count("calc")
        script.hold_words = None

        done = subprocess.run(
            eval_args(root, dataset, out, "--timeout", "120", "--jobs", "2"),
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "2 instance(s) run, 1 already done" in done.stdout
        # calc was not redone: no model request about it since it finished.
        assert script.count("calc") == calc_requests
        assert not llm.script_errors

    results = results_of(out)
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
    calc, words, broken = (results[f"acme__{n}-1"] for n in ("calc", "words", "broken"))

    assert calc["resolved"] is True and calc["reason"] == "resolved"
    assert calc["fail_to_pass"] == {"passed": 1, "total": 1}
    assert calc["pass_to_pass"] == {"passed": 1, "total": 1}
    assert calc["changed_files"] == ["calc.py"] and calc["gold_files"] == ["calc.py"]
    assert calc["localized"] is True
    [question] = calc["questions"]
    assert question["picked"] == 2 and question["recommended"] == 2
    assert question["picked_label"] == "No" and question["phase"] == "research"
    assert len(calc["subtasks"]) == 1 and calc["subtasks"][0]["state"] == "committed"
    assert calc["phases"]["research"]["requests"] == 2
    assert calc["phases"]["research"]["input_tokens"] > 0
    assert calc["phases"]["execute"]["requests"] == 3  # plan + edit + final answer
    assert calc["wall_seconds"] > 0

    assert words["resolved"] is False and words["reason"] == "tests_fail"
    assert words["fail_to_pass"] == {"passed": 0, "total": 1}
    assert words["pass_to_pass"] == {"passed": 1, "total": 1}
    assert words["failing_tests"] == ["tests/test_count.py::test_count"]
    assert words["localized"] is True and words["questions"] == []
    assert words["attempt"] == 3  # the interrupted and the crashed attempts' projects stay

    assert broken["reason"] == "environment"
    assert "rustc: command not found" in broken["detail"]
    assert broken["task_id"] is None and broken["usage"]["requests"] == 0
    assert broken["localized"] is None

    # The summary's figures are the JSONL's.
    summary = (out / "summary.md").read_text()
    section = summary.split("## Totals")[1].split("## ")[0]
    row = dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", section, re.MULTILINE))
    assert row["instances"] == "3"
    assert row["environment failures (not counted against the agent)"] == "1"
    assert row["resolved"] == "1 of 2 (50.0%)"
    assert row["questions asked (answered with the agent's pick)"] == "1"
    assert row["subtasks"] == str(sum(len(r["subtasks"]) for r in results.values()))
    requests = sum(r["usage"]["requests"] for r in results.values())
    assert row["model requests"] == str(requests)
    tokens_in = sum(r["usage"]["input_tokens"] for r in results.values())
    tokens_out = sum(r["usage"]["output_tokens"] for r in results.values())
    assert row["input / output tokens"] == f"{tokens_in:,} / {tokens_out:,}"
    assert row["localized (changed files include the gold files)"].startswith("2 of 2")
    assert re.search(r"^\| acme__words-1 \| no \| tests fail: FAIL_TO_PASS 0/1", summary, re.M)
    assert re.search(r"^\| environment failed \| 1 \|$", summary, re.M)
    assert "no price for scripted-model (give --price)" in summary

    # Everything done: a third run does nothing; compare reads two runs.
    again = subprocess.run(
        eval_args(root, dataset, out), env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert "0 instance(s) run, 3 already done" in again.stdout, again.stderr
    compared = subprocess.run(
        [*ERRANDS, "eval", "compare", str(out), str(out / "results.jsonl")],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "## Executor: native" in compared
    assert "| resolved | 1 (50.0%) | 1 (50.0%) |" in compared
    assert not (home / "errands.db").exists()  # the user's own store was never touched


def test_budget_stops_the_run_before_a_call_past_it(tmp_path: Path) -> None:
    dataset = build(tmp_path / "data", names=["calc", "words"])
    root, out, home = dataset.parent, tmp_path / "out", tmp_path / "home"
    script = EvalScript()
    price = 1000.0  # $ per million tokens, in and out: a tenth of a cent a token
    budget = 3.0
    with ScriptedLLM(script) as llm:
        env = env_for(llm, home)
        unpriced = subprocess.run(
            eval_args(root, dataset, out, "--budget", str(budget)),
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert unpriced.returncode == 1
        assert "no price for scripted-model" in unpriced.stderr, unpriced.stderr
        assert not script.requests
        done = subprocess.run(
            eval_args(root, dataset, out, "--budget", str(budget), "--price", "1000", "1000",
                      "--timeout", "120"),
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    assert "Budget reached: 1 instance(s) not run." in done.stdout
    [calc] = results_of(out).values()
    assert calc["instance_id"] == "acme__calc-1" and calc["reason"] == "budget"
    assert script.count("words") == 0  # the second instance never started
    # Stopped before the call that would pass the budget, not after it: the call refused was
    # estimated to cost more than what was left, and what was spent stayed under the budget.
    refused = re.search(
        r"has spent \$([\d.]+) this month, its cap is \$([\d.]+), and the next model call "
        r"\(about \$([\d.]+)\) would pass it",
        calc["detail"],
    )
    assert refused, calc["detail"]
    spent, cap, estimate = map(float, refused.groups())
    assert cap == budget and spent < budget < spent + estimate
    logs = subprocess.run(
        [*ERRANDS, "logs", str(calc["task_id"]), "--json"],
        env={**env, "ERRANDS_HOME": str(out / "home")},
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    calls = [e["data"] for e in map(json.loads, logs.splitlines()) if e["kind"] == "agent.response"]
    costs = [(c["input_tokens"] + c["output_tokens"]) * price / 1e6 for c in calls]
    assert len(calls) == len(script.requests) >= 1
    assert sum(costs) == pytest.approx(spent, abs=0.01) and sum(costs) < budget
    assert calc["usage"]["cost_usd"] == pytest.approx(sum(costs), abs=1e-5)


class QuietScript:
    """calc: the agent finds nothing to change. words: the model is too slow to answer."""

    def __call__(self, req: ChatRequest) -> Reply:
        phase = phase_of(req)
        if WORDS_MARK in req.user:
            return Reply.say("still thinking", delay=8)
        if phase == "research":
            return final(overview="calc.", requirements=[], relevant_files=[], risks=[],
                         questions=[])  # fmt: skip
        if phase == "plan":
            return final(subtasks=[{"title": "Look", "steps": ["Read sub"]}], out_of_scope=[])
        return final(summary="Nothing to do.", no_change_reason="sub already subtracts here")


def test_no_change_and_timeout_are_reasons_of_their_own(tmp_path: Path) -> None:
    dataset = build(tmp_path / "data", names=["calc", "words"])
    root, out = dataset.parent, tmp_path / "out"
    with ScriptedLLM(QuietScript()) as llm:
        env = env_for(llm, tmp_path / "home")
        for extra in (["--limit", "1"], ["--timeout", "3"]):
            done = subprocess.run(
                eval_args(root, dataset, out, *extra),
                env=env, capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
    results = results_of(out)
    calc, words = results["acme__calc-1"], results["acme__words-1"]
    assert calc["reason"] == "no_change" and calc["task_state"] == "in_review"
    assert calc["detail"] == "sub already subtracts here" and calc["changed_files"] == []
    assert calc["localized"] is None and calc["fail_to_pass"] == {}
    assert words["reason"] == "timeout"
    assert words["detail"] == "not in review within 3 s (it was researching)"
    assert words["task_state"] == "cancelled"
