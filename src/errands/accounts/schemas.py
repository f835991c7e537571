"""Public shapes of the accounts API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from errands.limits import BudgetUsd, Id, PricePerMTok
from errands.schemas import UtcDateTime


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class SignUp(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1000)
    name: str = Field(default="", max_length=200)
    org_name: str = Field(default="", max_length=200)
    invite_code: str | None = Field(default=None, max_length=200)


class LogIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1000)


class EmailOnly(BaseModel):
    email: str = Field(max_length=320)


class CodeOnly(BaseModel):
    code: str = Field(max_length=200)


class NewPassword(BaseModel):
    code: str = Field(max_length=200)
    password: str = Field(max_length=1000)


class OrgCreate(BaseModel):
    name: str = Field(max_length=200)


class OrgChoice(BaseModel):
    org_id: Id


class OrgPublic(_Public):
    id: int
    name: str
    role: str


class MePublic(BaseModel):
    """Who the request acts as. ``local``: no accounts exist (single-user mode)."""

    local: bool
    id: int | None = None
    email: str = ""
    name: str = ""
    email_verified: bool = False
    org: OrgPublic | None = None
    orgs: list[OrgPublic] = Field(default_factory=list)
    via: str
    csrf_token: str | None = Field(
        default=None,
        description="With a session cookie: send it as X-CSRF-Token on changes (or as the "
        "csrf_token field of a form).",
    )


class AuthStatus(BaseModel):
    accounts: bool
    signed_in: bool


class Done(BaseModel):
    status: str


class TokenCreate(BaseModel):
    name: str = Field(max_length=200)


class TokenPublic(_Public):
    id: int
    name: str
    prefix: str
    user_id: int
    created_at: UtcDateTime
    last_used_at: UtcDateTime | None
    revoked_at: UtcDateTime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="The token itself: shown this once, stored only hashed.")


class MemberPublic(BaseModel):
    user_id: int
    email: str
    name: str
    role: str


class RoleChange(BaseModel):
    role: str = Field(max_length=16)


class InvitationCreate(BaseModel):
    email: str = Field(max_length=320)
    role: str = Field(default="member", max_length=16)


class InvitationPublic(_Public):
    id: int
    email: str
    role: str | None
    expires_at: UtcDateTime


class InvitationSent(BaseModel):
    email: str
    sent: bool
    link: str | None = Field(
        default=None, description="The invitation link, when no SMTP server is configured."
    )


class PricePublic(BaseModel):
    model: str
    input_per_mtok: float
    output_per_mtok: float
    custom: bool


class PriceSet(BaseModel):
    model: str = Field(max_length=200)
    input_per_mtok: PricePerMTok
    output_per_mtok: PricePerMTok


class BudgetSet(BaseModel):
    usd: BudgetUsd | None = Field(default=None, description="The cap in US dollars; null: no cap.")


class OrgBudgetPublic(BaseModel):
    monthly_budget_usd: float | None
    month_cost_usd: float
    over_budget: bool


class TaskCostPublic(BaseModel):
    task_id: int
    cost_usd: float
    budget_usd: float | None
    budget_reached: bool


class UsageRowPublic(BaseModel):
    project: str
    task_id: int | None
    title: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class UsagePublic(BaseModel):
    since: UtcDateTime
    cost_usd: float
    monthly_budget_usd: float | None
    rows: list[UsageRowPublic]


class SecretSet(BaseModel):
    value: str = Field(max_length=20000)


class SecretPublic(_Public):
    name: str
    hint: str
    updated_at: UtcDateTime


class AuditPublic(_Public):
    id: int
    actor: str
    action: str
    target: str
    data: dict[str, Any]
    created_at: UtcDateTime
