"""Structured outputs the agents must produce; pydantic validates them and pydantic-ai sends a
validation error back to the model to fix."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]


class Option(BaseModel):
    label: ShortText = Field(description="A short label for the choice.")
    requirement: Text = Field(description="The requirement this choice implies, as one sentence.")


class ClarifyingQuestion(BaseModel):
    question: Text
    reasoning: Text = Field(description="Why the answer matters for the implementation.")
    options: list[Option] = Field(min_length=2, max_length=4)
    recommended: int = Field(description="1-based number of the option you would pick.")

    @model_validator(mode="after")
    def _recommended_in_range(self) -> ClarifyingQuestion:
        if not 1 <= self.recommended <= len(self.options):
            raise ValueError(
                f"recommended must be between 1 and {len(self.options)} (the option numbers)"
            )
        return self


class RelevantFile(BaseModel):
    path: ShortText
    reason: Text


class ResearchResult(BaseModel):
    overview: Text = Field(description="What the task is about and how the code is organised.")
    requirements: list[Text] = Field(description="Concrete requirements the work must meet.")
    relevant_files: list[RelevantFile] = Field(default_factory=list)
    risks: list[Text] = Field(default_factory=list)
    questions: list[ClarifyingQuestion] = Field(
        default_factory=list,
        max_length=5,
        description="0-5 questions whose answers change the implementation. None if clear.",
    )


class PlannedSubtask(BaseModel):
    title: ShortText = Field(description="Imperative, like a good commit subject.")
    steps: list[Text] = Field(min_length=1)


class Plan(BaseModel):
    subtasks: list[PlannedSubtask] = Field(min_length=1, max_length=8)
    out_of_scope: list[Text] = Field(default_factory=list)


class SubtaskReport(BaseModel):
    summary: Text = Field(description="What you changed, for the commit message and reviewer.")
    decisions: list[Text] = Field(
        default_factory=list, description="Choices you made and why, for the hand-off."
    )
    no_change_reason: Text | None = Field(
        default=None,
        description="Only when you changed no file because the subtask needs no change: why "
        "not (say, it is already done, and where). Leave it out when you changed files.",
    )


class CommentRoute(BaseModel):
    comment: int = Field(description="The comment's number, as listed (Comment N).")
    into: int | Literal["new"] = Field(
        description='The number of the subtask whose commit the fix belongs in, or "new" for '
        "work that belongs in a new subtask on top of the stack."
    )
    reason: ShortText = Field(description="One line: why this comment goes there.")


class CommentRouting(BaseModel):
    routes: list[CommentRoute] = Field(
        min_length=1, description="One entry per listed comment, each comment exactly once."
    )
