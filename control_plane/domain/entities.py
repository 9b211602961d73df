"""What use cases return: plain, immutable values (no ORM rows, no protobufs)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OrganizationView:
    id: str
    display_name: str
    state: str
    create_time: dt.datetime
    update_time: dt.datetime


@dataclass(frozen=True, slots=True)
class UserView:
    org_id: str
    id: str
    external_id: str
    display_name: str
    email: str
    state: str
    create_time: dt.datetime
    update_time: dt.datetime


@dataclass(frozen=True, slots=True)
class AgentView:
    org_id: str
    id: str
    display_name: str
    description: str
    state: str
    create_time: dt.datetime
    update_time: dt.datetime


@dataclass(frozen=True, slots=True)
class ServiceAccountView:
    org_id: str
    id: str
    display_name: str
    purpose: str
    state: str
    create_time: dt.datetime
    update_time: dt.datetime


@dataclass(frozen=True, slots=True)
class ApiKeyView:
    org_id: str | None  # None for a platform admin key
    id: str
    display_name: str
    key_hint: str
    state: str
    create_time: dt.datetime
    revoke_time: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str
