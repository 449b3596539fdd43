"""The shapes of /api/v1: one pydantic model per query, body and answer. They validate every
request (unknown fields and parameters are errors) and make the OpenAPI document."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from hotline.auth.roles import Role

NAME = r"^[A-Za-z0-9_-]{1,64}$"
AGENT_ID = r"^[0-9]{1,16}$"
USERNAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
PHONE = r"^[0-9+*#]{1,32}$"

# '+' in an unencoded query string arrives as a space: "2025-01-01T08:00:00 08:00".
_SPACED_OFFSET = re.compile(r"^(.*\d) (\d{2}(?::?\d{2})?)$")


def _when(value: Any) -> Any:
    """An ISO 8601 date or date-time; without an offset it is the hotline's local time."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 40 or not text.isascii():
            raise ValueError("must be an ISO 8601 date-time such as 2025-01-31T08:00:00+08:00")
        text = _SPACED_OFFSET.sub(r"\1+\2", text) if "T" in text else text
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text[:40]!r} is not an ISO 8601 date-time (e.g. 2025-01-31 or "
                             "2025-01-31T08:00:00+08:00)") from None
    if isinstance(value, datetime):
        if not 1970 <= value.year <= 2200:
            raise ValueError("out of range (years 1970 to 2200)")
        return value.astimezone() if value.tzinfo is None else value
    return value


When = Annotated[datetime, BeforeValidator(_when)]
AgentId = Annotated[str, Field(pattern=AGENT_ID, description="the agent's id: their extension (digits)")]
QueueName = Annotated[str, Field(pattern=NAME)]
Username = Annotated[str, Field(pattern=USERNAME)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- paging --------------------------------------------------------------------------------
class Page(Strict):
    limit: int = Field(50, ge=1, le=500, description="rows per page")
    cursor: Optional[str] = Field(None, max_length=200, description="next_cursor of the previous page")


# ---- sign-in -------------------------------------------------------------------------------
class SignIn(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Refresh(Strict):
    refresh_token: Optional[str] = Field(None, max_length=200, description="omit to use the pages' cookie")


class UserView(BaseModel):
    username: str
    role: Role
    agent_id: Optional[str]
    teams: list[str]
    disabled: bool
    created_at: datetime
    updated_at: datetime


class Tokens(BaseModel):
    token_type: Literal["bearer"]
    access_token: str
    expires_in: int
    refresh_token: str
    session_expires_at: datetime
    csrf_token: str
    user: UserView


class Me(BaseModel):
    username: str
    role: Optional[Role]
    agent_id: Optional[str]
    teams: list[str]


# ---- calls and statistics ------------------------------------------------------------------
Outcome = Literal["answered", "abandoned", "ivr_completed"]
Line = Literal["main", "enterprise"]


class CallsQuery(Page):
    since: Optional[When] = Field(None, description="arrived at or after (ISO 8601)")
    until: Optional[When] = Field(None, description="arrived before (ISO 8601)")
    queue: Optional[QueueName] = None
    agent: Optional[AgentId] = None
    outcome: Optional[Outcome] = None
    line: Optional[Line] = None
    caller: Optional[str] = Field(None, pattern=PHONE, description="the caller's number")


class CallRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    uniqueid: str
    arrived_at: datetime
    outcome: Outcome
    caller_id: Optional[str]
    queue: Optional[str]
    agent: Optional[str]


class CallsPage(BaseModel):
    calls: list[CallRow]
    next_cursor: Optional[str]


class StatsQuery(Strict):
    since: Optional[When] = None
    until: Optional[When] = None
    queue: Optional[QueueName] = None
    agent: Optional[AgentId] = Field(None, description="the calls this agent answered")
    line: Optional[Line] = None


class Stats(BaseModel):
    model_config = ConfigDict(extra="allow")
    since: Optional[datetime]
    until: Optional[datetime]
    offered: int
    answered: int
    abandoned: int
    answer_rate: Optional[float]


# ---- agents --------------------------------------------------------------------------------
class AgentPath(Strict):
    agent_id: AgentId


class AgentsQuery(Page):
    team: Optional[QueueName] = None
    state: Optional[Literal["logged_out", "ready", "reserved", "on_call", "wrapup", "not_ready"]] = None


class AgentView(BaseModel):
    id: str
    name: str
    team: str
    skills: dict[str, int]
    state: str
    state_since: Optional[float]
    reason: str
    call: str
    pending_reason: str = Field("", description="not ready for this reason once this call's wrap-up ends")


class AgentsPage(BaseModel):
    agents: list[AgentView]
    next_cursor: Optional[str]


NotReadyReason = Literal["break", "meal", "training", "meeting"]


class AgentStateChange(Strict):
    state: Literal["logged_in", "ready", "not_ready", "logged_out"] = Field(
        description="logged_in: log in ready (or not ready with a reason)")
    reason: Optional[NotReadyReason] = None
    after_call: bool = Field(False, description="with not_ready: once this call's wrap-up ends (not now); "
                                                "with ready: withdraw that")


class WrapupExtension(Strict):
    seconds: float = Field(30, gt=0, le=3600)


class AgentProfile(Strict):
    name: str = Field(min_length=1, max_length=64)
    team: QueueName = "default"
    skills: dict[Annotated[str, Field(pattern=NAME)], Annotated[int, Field(ge=1, le=10)]] = Field(
        default_factory=dict, max_length=50)


class AgentChanged(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    state: str
    stored: bool = True


class Imported(BaseModel):
    imported: int


class DecisionsQuery(Page):
    agent: Optional[AgentId] = None
    call: Optional[str] = Field(None, pattern=r"^[0-9A-Za-z._-]{1,64}$", description="the call's uniqueid")


class Decisions(BaseModel):
    decisions: list[dict[str, Any]]
    next_cursor: Optional[str]


# ---- call control (cti/v1/calls_control.py) -------------------------------------------------
class TransferRequest(Strict):
    kind: Literal["queue", "agent", "specialist", "emergency"]
    target: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$",
                        description="a queue, an agent's extension, a specialist's or an emergency number")
    mode: Literal["blind"] = Field("blind", description="blind: the caller goes at once (attended: not offered yet)")
    skills: Optional[str] = Field(None, max_length=200, description="queue only: what the caller queues with "
                                                                     "(mandarin:1+enterprise:3); default: as now")


class CallControlDone(BaseModel):
    model_config = ConfigDict(extra="allow")
    call: str


class TransferTargets(BaseModel):
    queues: list[str]
    specialists: list[str]
    emergency: list[dict[str, str]]
    max_transfers: int


# ---- users and audit -----------------------------------------------------------------------
class UserPath(Strict):
    username: Username


class UsersQuery(Page):
    role: Optional[Role] = None


class UsersPage(BaseModel):
    users: list[UserView]
    next_cursor: Optional[str]


class NewUser(Strict):
    username: Username
    role: Role
    password: str = Field(min_length=10, max_length=1024)
    agent_id: Optional[AgentId] = None
    teams: list[Annotated[str, Field(pattern=NAME)]] = Field(default_factory=list, max_length=50)


class UserChange(Strict):
    role: Optional[Role] = None
    agent_id: Optional[AgentId] = None
    teams: Optional[list[Annotated[str, Field(pattern=NAME)]]] = Field(None, max_length=50)
    disabled: Optional[bool] = None


class NewPassword(Strict):
    password: str = Field(min_length=10, max_length=1024)


class AuditQuery(Page):
    actor: Optional[str] = Field(None, max_length=80)
    action: Optional[str] = Field(None, pattern=r"^[a-z_]{1,40}$")
    since: Optional[When] = None
    until: Optional[When] = None


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: Optional[str]
    action: str
    target: Optional[str]
    detail: dict[str, Any]
    address: Optional[str]


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_cursor: Optional[str]


# ---- the floor -----------------------------------------------------------------------------
class Live(BaseModel):
    model_config = ConfigDict(extra="allow")
    at: float
    waiting: int
    longest_wait_s: float
    calls: dict[str, int]
    agents: dict[str, int]


class Health(BaseModel):
    redis: bool
    postgres: bool


# ---- tickets (cti/v1/tickets.py) -----------------------------------------------------------
CALL_ID = r"^[0-9A-Za-z._-]{1,64}$"
Urgency = Literal["urgent", "priority", "normal"]
HandoffState = Literal["queued", "delivered", "dead"]


class CategoryView(BaseModel):
    code: str
    zh: str
    en: str
    urgency: Urgency


class TicketCatalogue(BaseModel):
    categories: list[CategoryView]
    urgency_days: dict[str, int] = Field(description="working days to the deadline, per urgency")


class CallPath(Strict):
    call_id: str = Field(pattern=CALL_ID, description="the call's uniqueid")


class TicketForm(Strict):
    category: str = Field(pattern=r"^[a-z][a-z0-9-]{0,39}$", description="a code of the catalogue")
    summary: str = Field(min_length=1, max_length=4000)
    address: Optional[str] = Field(None, max_length=300)
    urgency: Optional[Urgency] = Field(None, description="default: the category's")
    idempotency_key: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9-]{16,64}$",
                                           description="made by the desktop when it opens the form (a UUID): "
                                                       "the form sent twice is one ticket")


class Handoff(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    idempotency_key: str
    call_id: str
    kind: Literal["ticket", "call"]
    state: HandoffState
    ticket_id: Optional[str]
    deadline: Optional[str]


class TicketFiled(Handoff):
    created: bool = Field(description="false: this idempotency key was submitted before (the same ticket)")
    deadline_provisional: bool = Field(description="the deadline crossed days of a year the holiday calendar "
                                                   "does not have in full yet")


class TicketPrefill(BaseModel):
    model_config = ConfigDict(extra="allow")
    category: Optional[str]
    urgency: Optional[Urgency]
    caller: str
    line: str


class CallTickets(BaseModel):
    call_id: str
    state: Optional[HandoffState] = Field(description="of the latest ticket of the call (null: none filed)")
    ticket_id: Optional[str]
    tickets: list[Handoff]
    prefill: TicketPrefill


class OutboxQuery(Strict):
    state: Optional[HandoffState] = None
    limit: int = Field(50, ge=1, le=500)
    cursor: Optional[str] = Field(None, max_length=200)


class OutboxPath(Strict):
    id: int = Field(ge=1, le=2**62)


class OutboxPage(BaseModel):
    handoffs: list[Handoff]
    next_cursor: Optional[str]
