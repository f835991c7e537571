"""The Markdown summary of a run, written from the JSONL alone (so it always agrees with it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from errands.evaluation.results import InstanceResult, Totals, Usage, totals

REASON_WORDS = {
    "resolved": "resolved",
    "no_change": "no change",
    "tests_fail": "tests fail",
    "timeout": "timeout",
    "budget": "budget reached",
    "error": "error",
    "environment": "environment failed",
}


def money(usd: float) -> str:
    return f"${usd:,.4f}"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def totals_rows(t: Totals) -> list[tuple[str, str]]:
    u = t.usage
    return [
        ("instances", str(t.instances)),
        ("environment failures (not counted against the agent)", str(t.environment_failures)),
        ("resolved",
         f"{t.resolved} of {t.agent_instances} ({percent(t.resolved, t.agent_instances)})"),
        ("localized (changed files include the gold files)",
         f"{t.localized} of {t.with_changes} with changes "
         f"({percent(t.localized, t.with_changes)})"),
        ("questions asked (answered with the agent's pick)", str(t.questions)),
        ("subtasks", str(t.subtasks)),
        ("model requests", str(u.requests)),
        ("input / output tokens", f"{u.input_tokens:,} / {u.output_tokens:,}"),
        ("cost", money(u.cost_usd)),
        ("wall time (sum / median per instance)",
         f"{t.wall_seconds:,.1f} s / {t.median_wall_seconds:,.1f} s"),
    ]  # fmt: skip


def phase_rows(phases: dict[str, Usage]) -> list[list[str]]:
    return [
        [
            phase,
            str(u.requests),
            f"{u.input_tokens:,}",
            f"{u.output_tokens:,}",
            money(u.cost_usd),
            f"{u.seconds:,.1f}",
        ]
        for phase, u in phases.items()
    ]


def render(results: list[InstanceResult], *, title: str, notes: Sequence[str] = ()) -> str:
    results = sorted(results, key=lambda r: r.instance_id)
    t = totals(results)
    parts = [f"# {title}", ""]
    parts += [f"- {note}" for note in notes]
    parts += ["", "## Totals", "", table(["", "value"], totals_rows(t)), ""]
    parts += ["## Outcomes (why not resolved)", ""]
    parts.append(
        table(
            ["reason", "instances"],
            [[REASON_WORDS[reason], str(n)] for reason, n in t.reasons.items() if n],
        )
    )
    parts += ["", "## Per phase", ""]
    parts.append(
        table(["phase", "requests", "input tokens", "output tokens", "cost", "seconds"],
              phase_rows(t.phases))
    )  # fmt: skip
    parts += ["", "## Per instance", ""]
    rows = []
    for r in results:
        u = r.usage
        f2p = f"{r.fail_to_pass.get('passed', 0)}/{r.fail_to_pass.get('total', 0)}"
        p2p = f"{r.pass_to_pass.get('passed', 0)}/{r.pass_to_pass.get('total', 0)}"
        localized = {True: "yes", False: "no", None: "-"}[r.localized]
        rows.append(
            [
                r.instance_id,
                "yes" if r.resolved else "no",
                REASON_WORDS[r.reason] + (f": {r.detail[:120]}" if r.detail else ""),
                f2p,
                p2p,
                str(len(r.questions)),
                str(len(r.subtasks)),
                localized,
                f"{u.input_tokens:,} / {u.output_tokens:,}",
                money(u.cost_usd),
                f"{r.wall_seconds:,.1f}",
            ]
        )
    parts.append(
        table(
            ["instance", "resolved", "why", "FAIL_TO_PASS", "PASS_TO_PASS", "questions",
             "subtasks", "localized", "tokens in / out", "cost", "seconds"],
            rows,
        )
    )  # fmt: skip
    answered = [(r.instance_id, q) for r in results for q in r.questions]
    if answered:
        parts += ["", "## Questions and the answers taken (the agent's own pick)", ""]
        parts += [
            f"- {iid} ({q.get('phase', 'research')}): {q['question']} → "
            + (f"{q['picked']}. {q['picked_label']}" if q.get("picked") else "not answered")
            for iid, q in answered
        ]
    return "\n".join(parts) + "\n"


def write(path: Path, results: list[InstanceResult], *, title: str, notes: Sequence[str]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(render(results, title=title, notes=notes), encoding="utf-8")
    partial.replace(path)
