"""The task state machine."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from errands.domain import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    TaskState,
    allowed_transitions,
    check_transition,
)
from errands.errors import Conflict, IllegalTransition

S = TaskState

HAPPY_PATH = [
    S.CREATED,
    S.RESEARCHING,
    S.AWAITING_ANSWERS,
    S.READY,
    S.EXECUTING,
    S.IN_REVIEW,
    S.REVISING,
    S.IN_REVIEW,
    S.MERGED,
]

# The workflow as DESIGN.md tells it, written out independently of domain.py — plus the
# agent asking while it executes or revises (issue 18.1): the answer to a revise round's
# question resumes the revision.
EXPECTED: dict[TaskState, set[TaskState]] = {
    S.CREATED: {S.RESEARCHING},
    S.RESEARCHING: {S.AWAITING_ANSWERS, S.READY},
    S.AWAITING_ANSWERS: {S.READY, S.REVISING},
    S.READY: {S.EXECUTING},
    S.EXECUTING: {S.IN_REVIEW, S.AWAITING_ANSWERS},
    S.IN_REVIEW: {S.REVISING, S.MERGED},
    S.REVISING: {S.IN_REVIEW, S.AWAITING_ANSWERS},
    S.FAILED: {S.RESEARCHING, S.EXECUTING, S.REVISING, S.IN_REVIEW, S.CANCELLED},
    S.MERGED: set(),
    S.CANCELLED: set(),
}
for _state in ACTIVE_STATES:
    EXPECTED[_state] |= {S.FAILED, S.CANCELLED}


def test_the_happy_path_is_allowed() -> None:
    for current, target in itertools.pairwise(HAPPY_PATH):
        assert check_transition(current, target) is target


def test_research_without_questions_goes_straight_to_ready() -> None:
    assert check_transition(S.RESEARCHING, S.READY) is S.READY


@pytest.mark.parametrize("state", sorted(EXPECTED))
def test_allowed_transitions_match_the_workflow(state: TaskState) -> None:
    assert allowed_transitions(state) == EXPECTED[state]


ILLEGAL = [(a, b) for a in TaskState for b in TaskState if b not in EXPECTED[a]]


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_every_illegal_transition_raises_naming_both_states(
    current: TaskState, target: TaskState
) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check_transition(current, target)
    message = str(caught.value)
    assert f"'{current}'" in message
    assert f"'{target}'" in message
    assert isinstance(caught.value, Conflict)
    assert caught.value.status == 409


def test_no_state_may_transition_to_itself() -> None:
    for state in TaskState:
        assert state not in allowed_transitions(state)


@pytest.mark.parametrize("final", [S.MERGED, S.CANCELLED])
def test_merged_and_cancelled_are_final(final: TaskState) -> None:
    assert final in TERMINAL_STATES
    assert allowed_transitions(final) == frozenset()
    for target in TaskState:
        with pytest.raises(IllegalTransition, match="final state"):
            check_transition(final, target)


def test_failed_and_cancelled_reachable_from_every_active_state() -> None:
    for state in ACTIVE_STATES:
        assert check_transition(state, S.FAILED) is S.FAILED
        assert check_transition(state, S.CANCELLED) is S.CANCELLED


@given(st.lists(st.sampled_from(TaskState), max_size=40))
def test_random_walks_accept_exactly_the_allowed_transitions(targets: list[TaskState]) -> None:
    current = S.CREATED
    for target in targets:
        allowed = allowed_transitions(current)
        assert allowed == EXPECTED[current]
        if current in TERMINAL_STATES:
            assert not allowed
        if target in allowed:
            assert check_transition(current, target) is target
            current = target
        else:
            with pytest.raises(IllegalTransition):
                check_transition(current, target)


class TaskLifecycle(RuleBasedStateMachine):
    """Drives a task with arbitrary requested transitions; finality can never be escaped."""

    def __init__(self) -> None:
        super().__init__()
        self.state = S.CREATED
        self.history = [S.CREATED]

    @rule(wanted=st.sampled_from(TaskState))
    def request(self, wanted: TaskState) -> None:
        legal = wanted in allowed_transitions(self.state)
        try:
            check_transition(self.state, wanted)
        except IllegalTransition:
            assert not legal
        else:
            assert legal
            self.state = wanted
            self.history.append(wanted)

    @invariant()
    def finality_holds(self) -> None:
        for i, state in enumerate(self.history):
            if state in TERMINAL_STATES:
                assert i == len(self.history) - 1, f"left final state {state}"

    @invariant()
    def every_state_is_known(self) -> None:
        assert self.state in ACTIVE_STATES | TERMINAL_STATES | {S.FAILED}


TaskLifecycle.TestCase.settings = settings(max_examples=200, stateful_step_count=30)
test_task_lifecycle = TaskLifecycle.TestCase
