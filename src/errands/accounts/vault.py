"""Organizations' own credentials (LLM keys, GitHub keys), encrypted at rest with
ERRANDS_SECRET_KEY. A saved value is never shown again — only its last characters — and it
joins the values redacted from events and logs wherever a job of the organization runs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from errands.accounts.crypto import SecretBox
from errands.accounts.service import project_org_id
from errands.errors import InvalidInput
from errands.settings import Settings
from errands.store import Database, OrgSecret, Project

# The secrets an organization may keep, and the setting each one stands in for.
NAMES = (
    "openai_api_key",
    "anthropic_api_key",
    "google_api_key",
    "github_token",
    "github_private_key",
)


def _name(name: str) -> str:
    if name not in NAMES:
        raise InvalidInput(f"Unknown secret {name!r}; one of: {', '.join(NAMES)}.")
    return name


def save(session: Session, settings: Settings, org_id: int, name: str, value: str) -> OrgSecret:
    if not value.strip():
        raise InvalidInput("The secret is empty.")
    box = SecretBox(settings.secret_key.get_secret_value() if settings.secret_key else None)
    row = session.get(OrgSecret, (org_id, _name(name)))
    if row is None:
        row = OrgSecret(org_id=org_id, name=name, ciphertext="", hint="")
        session.add(row)
    row.ciphertext = box.seal(value.strip())
    # Enough to recognise which key it is, never enough to use it.
    row.hint = "…" + value.strip()[-4:] if len(value.strip()) >= 12 else "…"
    session.flush()  # its timestamps, for the answer
    return row


def remove(session: Session, org_id: int, name: str) -> None:
    row = session.get(OrgSecret, (org_id, _name(name)))
    if row is not None:
        session.delete(row)


def listing(session: Session, org_id: int) -> list[OrgSecret]:
    return list(
        session.scalars(
            select(OrgSecret).where(OrgSecret.org_id == org_id).order_by(OrgSecret.name)
        )
    )


def settings_for_project(db: Database, settings: Settings, project_id: int) -> Settings:
    """The settings a job of this project runs with: the organization's own keys in place of
    the server's (and so redacted from the job's events like the server's)."""
    with db.session() as session:
        project = session.get(Project, project_id)
        org_id = project_org_id(session, project) if project is not None else None
        rows = listing(session, org_id) if org_id is not None else []
        if not rows:
            return settings
        box = SecretBox(settings.secret_key.get_secret_value() if settings.secret_key else None)
        values = {row.name: box.open(row.ciphertext) for row in rows}
    return settings.model_copy(update={name: _secret(value) for name, value in values.items()})


def _secret(value: str) -> object:
    from pydantic import SecretStr

    return SecretStr(value)
