"""The native loop on Google Gemini (google:<model>), through pydantic-ai's Google support and
the real google-genai client, against the scripted model speaking generateContent on
loopback (issue 17.6)."""

from __future__ import annotations

from pathlib import Path

from errands.agent.loop import AgentConfig, run_agent
from errands.agent.providers import build_model
from errands.agent.schemas import SubtaskReport
from errands.errors import LLMError
from errands.settings import Settings
from errands.testing.scripted_llm import ChatRequest, Reply, Script, ScriptedLLM
from tests.unit.test_agent_loop import Recorder, workspace_tools

KEY = "gemini-scripted-secret-0123456789"


def run(
    script: Script, home: Path, repo: Path, context_limit: int | None = None
) -> tuple[ScriptedLLM, Recorder, SubtaskReport | Exception]:
    recorder = Recorder()
    with ScriptedLLM(script, context_limit=context_limit) as llm:
        settings = Settings(
            home=home,
            model="google:gemini-3.8-flash",
            google_api_key=KEY,
            google_base_url=llm.gemini_base_url,
            llm_max_retries=0,
        )
        config = AgentConfig(
            model=lambda: build_model(settings, "execute"), max_requests=5, output_retries=1
        )
        outcome: SubtaskReport | Exception
        try:
            outcome = run_agent(
                config,
                name="gemini",
                instructions="Errands phase: execute.",
                prompt="Read calc.py, then report.",
                output_type=SubtaskReport,
                tools=workspace_tools(repo).read_only(),
                recorder=recorder,
            ).output
        except Exception as exc:
            outcome = exc
    assert not llm.script_errors, llm.script_errors
    return llm, recorder, outcome


def test_a_gemini_run_calls_tools_and_returns_its_output(home: Path, sample_repo: Path) -> None:
    def script(req: ChatRequest) -> Reply:
        if req.n_assistant == 0:
            return Reply.call("read_file", path="calc.py")
        return Reply.call("final_result", summary="Read it", decisions=[])

    llm, recorder, outcome = run(script, home, sample_repo)

    assert outcome == SubtaskReport(summary="Read it", decisions=[])
    first, second = llm.requests
    assert first.model == "gemini-3.8-flash"
    assert "Errands phase: execute." in first.system
    assert "read_file" in first.tools and "final_result" in first.tools
    assert second.tool_results[0][0] == "read_file"
    assert "def add(a, b):" in second.tool_results[0][1]
    # The key goes in Google's header, and nowhere the run records.
    assert first.headers["x-goog-api-key"] == KEY
    assert KEY not in str(recorder.events)
    [(requests, input_tokens, output_tokens)] = recorder.usages
    assert requests == 2 and input_tokens > 0 and output_tokens > 0


def test_gemini_refusing_a_prompt_as_too_long_is_condensed_and_sent_again(
    home: Path, sample_repo: Path
) -> None:
    (sample_repo / "data.txt").write_text("".join(f"line {n}: {'x' * 60}\n" for n in range(1500)))

    def script(req: ChatRequest) -> Reply:
        if req.n_assistant == 0:
            return Reply.call("read_file", path="data.txt")
        return Reply.call("final_result", summary="Read it", decisions=[])

    # Gemini's own 400: "The input token count (N) exceeds the maximum number of tokens
    # allowed (M)." The default window (1M tokens) lets the whole file out first.
    llm, recorder, outcome = run(script, home, sample_repo, context_limit=40_000)

    assert outcome == SubtaskReport(summary="Read it", decisions=[])
    sizes = [req.prompt_chars for req in llm.requests]
    assert len(sizes) == 3 and sizes[1] > 40_000 > sizes[2], sizes
    assert "agent.condensed" in recorder.kinds()


def test_a_refused_gemini_key_is_a_terminal_llm_error(home: Path, sample_repo: Path) -> None:
    _, _, outcome = run(lambda req: Reply.error(400, "API key not valid."), home, sample_repo)
    assert type(outcome) is LLMError
    assert "API key not valid" in str(outcome)
