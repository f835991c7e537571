"""The audit log: who changed what. Every state-changing request a signed-in user makes that
succeeds is recorded (answers, approvals and merges, project settings, budgets, prices,
secrets, members, tokens), by a middleware, so no route can forget to."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from errands.accounts.service import Principal
from errands.store import AuditEntry, Database

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def record(
    session: Session,
    principal: Principal,
    action: str,
    target: str = "",
    *,
    org_id: int | None = None,
    **data: Any,
) -> None:
    session.add(
        AuditEntry(
            org_id=org_id if org_id is not None else principal.org_id,
            user_id=principal.user_id,
            actor=principal.email,
            action=action,
            target=target,
            data=data,
        )
    )


def entries(session: Session, org_id: int, limit: int = 500) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.org_id == org_id)
            .order_by(AuditEntry.id.desc())
            .limit(limit)
        )
    )


class AuditTrail:
    """ASGI middleware: after a successful change by a signed-in principal, one entry."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        principal = scope.get("state", {}).get("principal")
        route = scope.get("route")
        if (
            isinstance(principal, Principal)
            and principal.signed_in
            and 200 <= status < 400
            and route is not None
        ):
            action = str(getattr(route, "name", "") or scope["path"])
            params = {k: str(v) for k, v in scope.get("path_params", {}).items()}
            db: Database = scope["app"].state.db
            await asyncio.to_thread(_write, db, principal, action, scope["path"], params)


def _write(
    db: Database, principal: Principal, action: str, target: str, params: dict[str, str]
) -> None:
    with db.session() as session:
        record(session, principal, action, target, params=params)
