"""run_agent against the scripted LLM over real HTTP, through the real OpenAI client."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from errands.agent.loop import AgentConfig, AgentResult, run_agent
from errands.agent.providers import build_model
from errands.agent.schemas import SubtaskReport
from errands.agent.tools import ToolFunction, WorkspaceTools
from errands.errors import AgentOutputError, Cancelled, LLMError, LLMUnavailable
from errands.git import Workspace
from errands.sandbox import PlainSandbox, SandboxPolicy
from errands.settings import Settings, sandbox_env
from errands.testing.scripted_llm import (
    FAST_RETRY_HEADERS,
    ChatRequest,
    Reply,
    Script,
    ScriptedLLM,
    ToolCall,
)

API_KEY = "sk-scripted-secret-0123456789"


@dataclass
class Recorder:
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    usages: list[tuple[int, int, int]] = field(default_factory=list)
    cancel_after_events: int | None = None

    def event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        self.events.append((kind, message, data))

    def usage(self, requests: int, input_tokens: int, output_tokens: int) -> None:
        self.usages.append((requests, input_tokens, output_tokens))

    def check_cancelled(self) -> None:
        if self.cancel_after_events is not None and len(self.events) >= self.cancel_after_events:
            raise Cancelled("the task was cancelled")

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.events]


def workspace_tools(repo: Path) -> WorkspaceTools:
    """The workspace tools over ``repo``, unsandboxed (these tests drive the agent loop, not
    the sandbox); commands get the environment's allowed variables as they are now."""
    return WorkspaceTools(
        repo,
        PlainSandbox(SandboxPolicy(workspace=repo, env=sandbox_env())),
        repository=Workspace(repo, "main", repo / ".git"),
        command_timeout=30,
    )


@pytest.fixture
def tools(sample_repo: Path) -> WorkspaceTools:
    return workspace_tools(sample_repo)


@dataclass
class Run:
    llm: ScriptedLLM
    recorder: Recorder
    result: AgentResult[SubtaskReport] | None = None
    error: Exception | None = None


def run(
    script: Script,
    home: Path,
    *,
    max_requests: int = 10,
    tools: Sequence[ToolFunction] = (),
    recorder: Recorder | None = None,
    base_url: str | None = None,
    context_limit: int | None = None,
) -> Run:
    recorder = recorder or Recorder()
    with ScriptedLLM(script, context_limit=context_limit) as llm:
        settings = Settings(
            home=home,
            model="openai:m",
            openai_base_url=base_url or llm.base_url,
            openai_api_key=API_KEY,
            llm_max_retries=1,
        )
        config = AgentConfig(
            model=lambda: build_model(settings, "research"),
            max_requests=max_requests,
            output_retries=1,
        )
        outcome = Run(llm, recorder)
        try:
            outcome.result = run_agent(
                config,
                name="tester",
                instructions="You test things.",
                prompt="Report what you did.",
                output_type=SubtaskReport,
                tools=tools,
                recorder=recorder,
            )
        except Exception as exc:
            outcome.error = exc
    assert not llm.script_errors, llm.script_errors
    return outcome


def report(**args: object) -> Reply:
    return Reply.call("final_result", **args)


VALID = {"summary": "Added the thing", "decisions": ["kept it small"]}


def test_a_valid_structured_output_is_returned_and_usage_recorded(home: Path) -> None:
    outcome = run(lambda req: report(**VALID), home)

    assert outcome.error is None
    assert outcome.result is not None
    assert outcome.result.output == SubtaskReport(**VALID)
    assert len(outcome.llm.requests) == 1
    assert "final_result" in outcome.llm.requests[0].tools
    [(requests, input_tokens, output_tokens)] = outcome.recorder.usages
    assert requests == 1
    assert input_tokens > 0
    assert output_tokens > 0
    assert outcome.recorder.kinds()[:3] == ["agent.prompt", "agent.response", "agent.tool_call"]
    assert outcome.result.messages  # the transcript, for a later revise run


def test_an_invalid_output_is_sent_back_and_the_fixed_one_accepted(home: Path) -> None:
    def script(req: ChatRequest) -> Reply:
        if req.n_assistant == 0:
            return report(decisions=["forgot the summary"])
        return report(**VALID)

    outcome = run(script, home)

    assert outcome.error is None
    assert outcome.result is not None
    assert outcome.result.output.summary == "Added the thing"
    assert len(outcome.llm.requests) == 2
    retries = [data for kind, _, data in outcome.recorder.events if kind == "agent.retry"]
    assert len(retries) == 1
    assert retries[0]["tool"] == "final_result"
    assert "summary" in json.dumps(retries[0]["content"], default=str)
    assert outcome.recorder.usages[0][0] == 2


def test_an_output_that_never_validates_is_an_agent_output_error(home: Path) -> None:
    outcome = run(lambda req: report(summary="   "), home)

    assert isinstance(outcome.error, AgentOutputError)
    assert "tester" in str(outcome.error)
    assert len(outcome.llm.requests) == 2  # the first try and one output retry
    assert outcome.recorder.usages[0][0] == 2


def test_plain_text_instead_of_the_output_tool_is_an_agent_output_error(home: Path) -> None:
    outcome = run(lambda req: Reply.say("I am done."), home)
    assert isinstance(outcome.error, AgentOutputError)
    assert "agent.text" in outcome.recorder.kinds()


def test_http_500_becomes_a_retryable_llm_error_after_retries(home: Path) -> None:
    outcome = run(lambda req: Reply.error(500, "upstream down", headers=FAST_RETRY_HEADERS), home)

    assert type(outcome.error) is LLMUnavailable
    assert outcome.error.retryable
    assert "500" in str(outcome.error)
    assert "upstream down" in str(outcome.error)
    assert len(outcome.llm.requests) == 2  # 1 + llm_max_retries
    assert outcome.recorder.usages  # reported even when the run fails


def test_a_refused_key_is_a_terminal_llm_error(home: Path) -> None:
    outcome = run(lambda req: Reply.error(401, "invalid api key"), home)

    assert type(outcome.error) is LLMError
    assert not outcome.error.retryable
    assert "401" in str(outcome.error)
    assert len(outcome.llm.requests) == 1  # nothing to retry


def test_an_unreachable_endpoint_is_a_retryable_llm_error(home: Path) -> None:
    from tests.support import free_port

    outcome = run(
        lambda req: report(summary="never"), home, base_url=f"http://127.0.0.1:{free_port()}/v1"
    )

    assert type(outcome.error) is LLMUnavailable
    assert outcome.error.retryable


def test_a_429_once_is_retried_and_the_run_succeeds(home: Path) -> None:
    limited: list[ChatRequest] = []

    def script(req: ChatRequest) -> Reply:
        if not limited:
            limited.append(req)
            return Reply.error(429, "slow down", headers=FAST_RETRY_HEADERS)
        return report(**VALID)

    outcome = run(script, home)

    assert outcome.error is None
    assert outcome.result is not None
    assert outcome.result.output == SubtaskReport(**VALID)
    assert len(outcome.llm.requests) == 2


def test_a_garbage_200_body_is_an_agent_output_error_saying_so(home: Path) -> None:
    outcome = run(lambda req: Reply.garbage("<html>oops"), home)

    assert type(outcome.error) is AgentOutputError
    assert "Invalid response" in str(outcome.error)


def test_the_request_budget_ends_a_run_that_never_finishes(
    home: Path, tools: WorkspaceTools
) -> None:

    outcome = run(
        lambda req: Reply.call("list_files", directory="."),
        home,
        max_requests=3,
        tools=tools.read_only(),
    )

    assert isinstance(outcome.error, AgentOutputError)
    assert "request budget" in str(outcome.error)
    assert len(outcome.llm.requests) == 3
    assert outcome.recorder.usages[0][0] == 3


def test_tool_calls_and_results_are_recorded(home: Path, tools: WorkspaceTools) -> None:

    def script(req: ChatRequest) -> Reply:
        if req.n_assistant == 0:
            return Reply.call("read_file", path="calc.py")
        assert req.last_tool_result is not None
        assert "return a + b" in req.last_tool_result
        return report(**VALID)

    outcome = run(script, home, tools=tools.read_only())

    assert outcome.error is None
    calls = [d for k, _, d in outcome.recorder.events if k == "agent.tool_call"]
    results = [d for k, _, d in outcome.recorder.events if k == "agent.tool_result"]
    assert calls[0] == {"agent": "tester", "tool": "read_file", "args": {"path": "calc.py"}}
    assert results[0]["tool"] == "read_file"
    assert "return a + b" in results[0]["content"]


def test_each_run_calls_the_tools_of_its_own_workspace(home: Path, tmp_path: Path) -> None:
    """Tool schemas are built once per method and reused: a later run's tools must still be
    bound to that run's workspace, never to the first one's."""
    seen: list[str] = []
    for name in ("first", "second"):
        repo = tmp_path / name
        repo.mkdir()
        (repo / "who.txt").write_text(f"this is {name}\n")

        def script(req: ChatRequest) -> Reply:
            if req.n_assistant == 0:
                return Reply.call("read_file", path="who.txt")
            assert req.last_tool_result is not None
            seen.append(req.last_tool_result)
            return report(**VALID)

        outcome = run(script, home, tools=workspace_tools(repo).read_only())
        assert outcome.error is None
    assert "this is first" in seen[0] and "this is second" in seen[1]


@dataclass
class BatchingRecorder(Recorder):
    batches: list[list[str]] = field(default_factory=list)

    def record_events(self, items: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        self.batches.append([kind for kind, _, _ in items])
        for kind, message, data in items:
            self.event(kind, message, data)


def test_what_one_response_holds_is_recorded_as_one_batch(
    home: Path, tools: WorkspaceTools
) -> None:
    """A recorder that can write several events at once (a job's: one transaction) gets a
    model response with its tool calls together, and a request with its tool results."""

    def script(req: ChatRequest) -> Reply:
        if req.n_assistant == 0:
            return Reply.call("read_file", path="calc.py")
        return report(**VALID)

    recorder = BatchingRecorder()
    outcome = run(script, home, tools=tools.read_only(), recorder=recorder)
    assert outcome.error is None
    assert ["agent.response", "agent.tool_call"] in recorder.batches
    assert ["agent.tool_result"] in recorder.batches
    assert sum(len(b) for b in recorder.batches) == len(recorder.events)


def test_cancellation_stops_the_run_and_still_reports_usage(
    home: Path, tools: WorkspaceTools
) -> None:
    recorder = Recorder(cancel_after_events=3)

    outcome = run(
        lambda req: Reply.call("list_files"), home, tools=tools.read_only(), recorder=recorder
    )

    assert isinstance(outcome.error, Cancelled)
    assert len(outcome.llm.requests) < 10
    assert recorder.usages


def test_the_api_key_never_appears_in_events(
    home: Path, sample_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In the host environment too, so a leak into the command's `env` would show up.
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    tools = workspace_tools(sample_repo)  # after the variable is set

    def script(req: ChatRequest) -> Reply:
        if req.n_assistant == 0:
            return Reply.call("run_command", command="env; echo done")
        if req.n_assistant == 1:
            return report(decisions=[])  # invalid: a retry event with the error text
        return report(**VALID)

    outcome = run(script, home, tools=tools.read_write())

    assert outcome.error is None
    kinds = set(outcome.recorder.kinds())
    assert {"agent.prompt", "agent.tool_call", "agent.tool_result", "agent.retry"} <= kinds
    recorded = json.dumps(outcome.recorder.events, default=str)
    assert "done" in recorded
    assert API_KEY not in recorded
    for request in outcome.llm.requests:
        assert API_KEY not in json.dumps(request.body)


def test_tool_calls_of_one_response_run_one_at_a_time_in_the_order_asked(home: Path) -> None:
    running: list[int] = []
    at_once: list[int] = []
    order: list[int] = []

    def step(n: int) -> str:
        """Do step n."""
        running.append(n)
        at_once.append(len(running))
        time.sleep(0.05)  # long enough for a second call, run in parallel, to start
        order.append(n)
        running.remove(n)
        return f"step {n} done"

    def script(req: ChatRequest) -> Reply:
        if req.n_assistant == 0:
            return Reply.calls(*(ToolCall("step", {"n": n}) for n in (1, 2, 3)))
        assert [content for _, content in req.tool_results] == [
            "step 1 done", "step 2 done", "step 3 done",
        ]  # fmt: skip
        return report(**VALID)

    outcome = run(script, home, tools=[step])

    assert outcome.error is None
    assert order == [1, 2, 3]
    assert max(at_once) == 1


def edit(old: str, new: str) -> dict[str, str]:
    return {"path": "calc.py", "old_text": old, "new_text": new}


def test_two_edits_of_one_file_in_one_response_both_land(
    home: Path, sample_repo: Path, tools: WorkspaceTools
) -> None:

    def script(req: ChatRequest) -> Reply:
        if req.n_assistant == 0:
            return Reply.calls(
                ToolCall("edit_file", edit("def add", "def plus")),
                ToolCall("edit_file", edit("a + b", "b + a")),
            )
        return report(**VALID)

    outcome = run(script, home, tools=tools.read_write())

    assert outcome.error is None
    text = (sample_repo / "calc.py").read_text()
    assert "def plus" in text
    assert "return b + a" in text


def test_a_huge_tool_output_reaches_the_model_cut_in_the_middle_with_a_note(
    home: Path, sample_repo: Path, tools: WorkspaceTools
) -> None:
    # One line of 300,000 characters: read_file's line limit does not bound it.
    (sample_repo / "big.min.js").write_text("HEAD-MARK" + "x" * 300_000 + "TAIL-MARK\n")

    def script(req: ChatRequest) -> Reply:
        if req.n_assistant == 0:
            return Reply.call("read_file", path="big.min.js")
        return report(**VALID)

    outcome = run(script, home, tools=tools.read_only())

    assert outcome.error is None, outcome.error
    result = outcome.llm.requests[1].last_tool_result
    assert result is not None
    # openai:m is not a model we know: a 32k-token window, a quarter of its budget per result.
    assert len(result) < 20_000
    assert "HEAD-MARK" in result[:100] and result.rstrip().endswith("TAIL-MARK")
    assert "characters cut from the middle of this output" in result
    assert "start_line and end_line" in result  # how to see the rest


def test_a_prompt_the_endpoint_keeps_refusing_fails_after_bounded_retries(
    home: Path, sample_repo: Path, tools: WorkspaceTools
) -> None:
    outcome = run(lambda req: report(**VALID), home, context_limit=10)

    assert type(outcome.error) is LLMError
    assert "too long" in str(outcome.error) and "ERRANDS_CONTEXT_WINDOWS" in str(outcome.error)
    assert len(outcome.llm.requests) == 1 + 3  # the first try and three condensed ones
    assert outcome.recorder.kinds().count("agent.condensed") == 3
