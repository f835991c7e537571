"""The native executor: Errands' own tool-calling loop (errands.agent.loop), with the
workspace's tools. Each turn continues the subtask's message history."""

from __future__ import annotations

from pydantic_ai.messages import ModelMessage

from errands.agent.loop import QuestionAsked, run_agent
from errands.agent.schemas import SubtaskReport
from errands.executors.base import Assignment, ExecutorReport, Usage, Workbench
from errands.mcp import native_toolsets


class NativeSession:
    def __init__(self, bench: Workbench, assignment: Assignment) -> None:
        self.bench = bench
        self.assignment = assignment
        self.history: list[ModelMessage] | None = None

    def turn(self, prompt: str) -> ExecutorReport:
        try:
            result = run_agent(
                self.bench.agent,
                name=self.assignment.name,
                instructions=self.assignment.instructions,
                prompt=prompt,
                output_type=SubtaskReport,
                tools=self.bench.tools.read_write(),
                recorder=self.bench.recorder,
                message_history=self.history,
                # The project's MCP servers, each started inside the work sandbox for the run.
                toolsets=native_toolsets(self.bench.mcp_servers, self.bench.sandbox),
                ask=True,  # the ask_human tool: it stops the turn with QuestionAsked
            )
        except QuestionAsked as asked:
            # Kept, so a turn told to go on with its own leaning continues this conversation.
            self.history = asked.messages
            raise
        self.history = result.messages
        report = result.output
        # The loop reports its usage to the recorder itself (also when a run fails).
        return ExecutorReport(
            summary=report.summary,
            decisions=list(report.decisions),
            no_change_reason=report.no_change_reason,
            usage=Usage(),
        )


class NativeExecutor:
    name = "native"
    report_hint = "answer with final_result"

    def start(self, bench: Workbench, assignment: Assignment) -> NativeSession:
        return NativeSession(bench, assignment)
