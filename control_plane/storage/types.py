"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out (SQLite drops tzinfo otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise ValueError("UTCDateTime needs a timezone-aware datetime")
        utc: dt.datetime = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MICROSECOND = dt.timedelta(microseconds=1)


def to_epoch_micros(value: dt.datetime) -> int:
    """Whole microseconds since the Unix epoch (exact: timedelta // timedelta)."""
    if value.tzinfo is None:
        raise ValueError("needs a timezone-aware datetime")
    return (value - EPOCH) // MICROSECOND


def from_epoch_micros(value: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=value)


class EpochMicros(TypeDecorator[dt.datetime]):
    """A UTC instant stored as BIGINT microseconds since the Unix epoch.

    For columns that SQL does arithmetic on (the rate-limit buckets' refill):
    integer subtraction is exact and spelled the same on PostgreSQL and SQLite,
    where SQLite's own date functions keep only milliseconds. Python sees
    timezone-aware datetimes, like ``UTCDateTime``.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise ValueError("EpochMicros needs a timezone-aware datetime")
        return to_epoch_micros(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return from_epoch_micros(int(value))
