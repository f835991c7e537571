"""Roles in an organization and the access levels routes declare."""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal["owner", "member", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)

# What a route needs: nothing (public), any signed-in user (user), or a role in the
# organization the request acts in: read (viewer+), act (member+), admin (owner).
Level = Literal["public", "user", "read", "act", "admin"]

_RANK: dict[Role, int] = {"viewer": 1, "member": 2, "owner": 3}
_NEEDS: dict[Level, int] = {"public": 0, "user": 0, "read": 1, "act": 2, "admin": 3}


def allows(role: Role, level: Level) -> bool:
    return _RANK[role] >= _NEEDS[level]


def parse_role(value: str) -> Role:
    from errands.errors import InvalidInput

    for role in ROLES:
        if value == role:
            return role
    raise InvalidInput(f"Unknown role {value!r}; one of: {', '.join(ROLES)}.")
