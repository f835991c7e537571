"""Turning GitHub issues and comments into task text, and answers out of comments."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from errands.github.payloads import Issue
from errands.github.sanitize import sanitize

MAX_TITLE = 300
MAX_BODY = 200_000
COMMAND = re.compile(r"^\s*/errands\b", re.MULTILINE)
# "1: 2", "Q1: 2", "1. use floats", "q2) ints only"
_ANSWER = re.compile(r"^\s*[Qq]?(\d+)\s*[:.)]\s*(.+?)\s*$")


def issue_title(issue: Issue) -> str:
    title = sanitize(issue.title) or f"Issue #{issue.number}"
    return title[:MAX_TITLE]


def issue_body(issue: Issue, comments: Sequence[tuple[str, str]] = ()) -> str:
    """The task body: the issue's text and the comments of people with write access, each
    sanitised, with where it came from."""
    parts = [sanitize(issue.body or "") or "(no description)"]
    for login, text in comments:
        parts.append(comment_block(login, text))
    parts.append(f"(From GitHub issue #{issue.number}: {sanitize(issue.html_url)})")
    return "\n\n".join(parts)[:MAX_BODY]


def comment_block(login: str, text: str) -> str:
    return f"Comment by @{login} on GitHub:\n{sanitize(text)}"


def is_command(text: str) -> bool:
    return COMMAND.search(text or "") is not None


@dataclass(frozen=True)
class Answer:
    question: int
    option: int | None
    text: str | None


def parse_answers(text: str, options_per_question: dict[int, int]) -> list[Answer]:
    """Answers written one per line as ``<question>: <option number or words>``."""
    answers: dict[int, Answer] = {}
    for line in sanitize(text).splitlines():
        match = _ANSWER.match(line)
        if match is None:
            continue
        number, value = int(match[1]), match[2]
        if number not in options_per_question:
            continue
        if value.isdigit() and 1 <= int(value) <= options_per_question[number]:
            answers[number] = Answer(number, int(value), None)
        else:
            answers[number] = Answer(number, None, value)
    return [answers[n] for n in sorted(answers)]


def questions_comment(questions: list[Any], *, again: bool = False) -> str:
    """The clarifying questions, as posted on the issue, with how to answer them; ``again``
    for a later round (research run again, or the agent asking while it works)."""
    opening = (
        "Errands has new questions about this issue:"
        if again
        else "Errands researched this issue and has questions before it starts coding:"
    )
    lines = [opening, ""]
    for q in questions:
        lines.append(f"**{q.position}. {q.text}**")
        for number, option in enumerate(q.options, start=1):
            pick = " _(suggested)_" if q.recommended == number else ""
            lines.append(f"   {number}. {option.get('label')} — {option.get('requirement')}{pick}")
        lines.append("")
    lines += [
        "Answer in a comment, one line per question: `<question>: <option number>` or "
        "`<question>: <your own answer>`, e.g. `1: 2`. Only answers from people with write "
        "access to this repository are taken.",
    ]
    return "\n".join(lines)
