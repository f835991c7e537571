"""Results: one JSON line per finished instance (appended and synced as each finishes, so a
crash loses only the instances in flight), and the totals every summary is computed from."""

from __future__ import annotations

import json
import os
import statistics
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from errands.errors import InvalidInput

Reason = Literal["resolved", "no_change", "tests_fail", "timeout", "budget", "error", "environment"]
REASONS: tuple[Reason, ...] = get_args(Reason)
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.md"


@dataclass
class Usage:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0

    def add(self, other: Usage) -> None:
        self.requests += other.requests
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd = round(self.cost_usd + other.cost_usd, 6)
        self.seconds = round(self.seconds + other.seconds, 3)


@dataclass
class InstanceResult:
    instance_id: str
    repo: str
    executor: str
    model: str
    reason: Reason
    detail: str = ""
    task_id: int | None = None
    task_state: str | None = None
    # Each question research asked, the options' labels and the one answered (the agent's own
    # pick: nobody is there to answer).
    questions: list[dict[str, Any]] = field(default_factory=list)
    subtasks: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, Usage] = field(default_factory=dict)  # job kind → usage
    wall_seconds: float = 0.0
    gold_files: list[str] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)
    fail_to_pass: dict[str, int] = field(default_factory=dict)  # {"passed": n, "total": n}
    pass_to_pass: dict[str, int] = field(default_factory=dict)
    failing_tests: list[str] = field(default_factory=list)
    output_tail: str = ""
    attempt: int = 1

    @property
    def resolved(self) -> bool:
        return self.reason == "resolved"

    @property
    def localized(self) -> bool | None:
        """Whether the changed files include every file of the gold patch (None: no change)."""
        if not self.changed_files or not self.gold_files:
            return None
        return set(self.gold_files) <= set(self.changed_files)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for usage in self.phases.values():
            total.add(usage)
        return total

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["resolved"] = self.resolved
        data["localized"] = self.localized
        data["usage"] = asdict(self.usage)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstanceResult:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["phases"] = {k: Usage(**v) for k, v in (data.get("phases") or {}).items()}
        if values.get("reason") not in REASONS:
            raise InvalidInput(f"Unknown reason {values.get('reason')!r} in a results line.")
        return cls(**values)


class ResultsFile:
    """The run's JSONL file; safe to append to from several instance threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> list[InstanceResult]:
        return load_results(self.path) if self.path.exists() else []

    def append(self, result: InstanceResult) -> None:
        line = json.dumps(result.to_json(), sort_keys=True) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as sink:
                sink.write(line)
                sink.flush()
                os.fsync(sink.fileno())


def load_results(path: Path) -> list[InstanceResult]:
    """Every complete line; a last line cut short by a crash is ignored (its instance runs
    again). A later line for the same instance replaces an earlier one."""
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path} does not exist.") from exc
    found: dict[str, InstanceResult] = {}
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # unterminated: the write a crash interrupted
                continue
            raise InvalidInput(f"{path} line {number} is not JSON: {exc.msg}.") from exc
        result = InstanceResult.from_json(data)
        found[result.instance_id] = result
    return list(found.values())


@dataclass(frozen=True)
class Totals:
    instances: int
    resolved: int
    reasons: dict[str, int]
    environment_failures: int
    questions: int
    subtasks: int
    localized: int
    with_changes: int
    usage: Usage
    phases: dict[str, Usage]
    wall_seconds: float
    median_wall_seconds: float

    @property
    def agent_instances(self) -> int:
        """Instances whose environment was built: the ones the agent is measured on."""
        return self.instances - self.environment_failures

    @property
    def resolved_rate(self) -> float:
        return self.resolved / self.agent_instances if self.agent_instances else 0.0


def totals(results: list[InstanceResult]) -> Totals:
    usage, phases = Usage(), dict[str, Usage]()
    for r in results:
        usage.add(r.usage)
        for phase, u in r.phases.items():
            phases.setdefault(phase, Usage()).add(u)
    reasons: dict[str, int] = {
        reason: sum(r.reason == reason for r in results) for reason in REASONS
    }
    walls = [r.wall_seconds for r in results]
    return Totals(
        instances=len(results),
        resolved=reasons["resolved"],
        reasons=reasons,
        environment_failures=reasons["environment"],
        questions=sum(len(r.questions) for r in results),
        subtasks=sum(len(r.subtasks) for r in results),
        localized=sum(r.localized is True for r in results),
        with_changes=sum(r.localized is not None for r in results),
        usage=usage,
        phases=dict(sorted(phases.items())),
        wall_seconds=round(sum(walls), 3),
        median_wall_seconds=round(statistics.median(walls), 3) if walls else 0.0,
    )
