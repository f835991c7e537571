"""Two runs side by side: one table per executor, and the instances only one run resolved."""

from __future__ import annotations

from pathlib import Path

from errands.evaluation.results import InstanceResult, load_results, totals
from errands.evaluation.summary import money, percent, table


def compare(a: Path, b: Path) -> str:
    runs = {"A": load_results(a), "B": load_results(b)}
    executors = sorted({r.executor for results in runs.values() for r in results})
    parts = [f"# Comparison\n\n- A: {a}\n- B: {b}\n"]
    for executor in executors:
        mine = {
            name: [r for r in results if r.executor == executor] for name, results in runs.items()
        }
        parts.append(f"## Executor: {executor}\n")
        parts.append(_table(mine["A"], mine["B"]))
        parts.append(_differences(mine["A"], mine["B"]))
    return "\n".join(parts)


def _table(a: list[InstanceResult], b: list[InstanceResult]) -> str:
    ta, tb = totals(a), totals(b)

    def models(results: list[InstanceResult]) -> str:
        return ", ".join(sorted({r.model for r in results})) or "-"

    rows = [
        ["model(s)", models(a), models(b)],
        ["instances", str(ta.instances), str(tb.instances)],
        ["environment failures", str(ta.environment_failures), str(tb.environment_failures)],
        [
            "resolved",
            f"{ta.resolved} ({percent(ta.resolved, ta.agent_instances)})",
            f"{tb.resolved} ({percent(tb.resolved, tb.agent_instances)})",
        ],
        [
            "localized",
            f"{ta.localized} of {ta.with_changes}",
            f"{tb.localized} of {tb.with_changes}",
        ],
        ["questions", str(ta.questions), str(tb.questions)],
        ["subtasks", str(ta.subtasks), str(tb.subtasks)],
        ["input tokens", f"{ta.usage.input_tokens:,}", f"{tb.usage.input_tokens:,}"],
        ["output tokens", f"{ta.usage.output_tokens:,}", f"{tb.usage.output_tokens:,}"],
        ["cost", money(ta.usage.cost_usd), money(tb.usage.cost_usd)],
        [
            "cost per resolved",
            money(ta.usage.cost_usd / ta.resolved) if ta.resolved else "-",
            money(tb.usage.cost_usd / tb.resolved) if tb.resolved else "-",
        ],
        ["median wall time", f"{ta.median_wall_seconds:.1f} s", f"{tb.median_wall_seconds:.1f} s"],
    ]
    for reason, n in ta.reasons.items():
        if n or tb.reasons[reason]:
            rows.append([f"why: {reason}", str(n), str(tb.reasons[reason])])
    return table(["", "A", "B"], rows) + "\n"


def _differences(a: list[InstanceResult], b: list[InstanceResult]) -> str:
    ra = {r.instance_id for r in a if r.resolved}
    rb = {r.instance_id for r in b if r.resolved}
    both = {r.instance_id for r in a} & {r.instance_id for r in b}
    lines = [
        f"- resolved only in A: {', '.join(sorted((ra - rb) & both)) or 'none'}",
        f"- resolved only in B: {', '.join(sorted((rb - ra) & both)) or 'none'}",
        f"- instances in both runs: {len(both)}",
    ]
    return "\n".join(lines) + "\n"
