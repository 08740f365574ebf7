"""The admin password, throttled for everyone: guessing costs the same from one tab or a hundred.

Failed sign-ins are written to the study's event log with the time and the client's address (never
the password tried). After `MAX_FAILURES` failures within `WINDOW`, sign-in is locked for everyone
for `LOCKOUT` after the last failure; the database, not a browser session, keeps the count, so
parallel tabs or server processes do not multiply the attempts.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from study.store.database import Database, Event, as_utc, utcnow

MAX_FAILURES = 10
WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=5)
FAILED = "admin_login_failed"


class LoginLocked(ValueError):
    """Too many failed sign-ins lately; `until` says when sign-in opens again."""

    def __init__(self, until: datetime):
        super().__init__(f"sign-in is locked until {until:%H:%M:%S} UTC after too many failed attempts")
        self.until = until


class AdminLogin:
    def __init__(self, db: Database, study_id: int, now: Callable[[], datetime] = utcnow):
        self.db, self.study_id, self._now = db, study_id, now

    def locked_until(self) -> datetime | None:
        """When sign-in opens again, or None when it is open."""
        with self.db.read() as s:
            failures = s.scalars(select(Event.at).where(Event.study_id == self.study_id, Event.kind == FAILED,
                                                        Event.at >= self._now() - WINDOW)
                                 .order_by(Event.at.desc()).limit(MAX_FAILURES)).all()
        if len(failures) < MAX_FAILURES:
            return None
        until = as_utc(failures[0]) + LOCKOUT
        return until if until > self._now() else None

    def check(self, given: str, expected: str, address: str | None) -> bool:
        """Whether `given` is the password; a failure is logged. LoginLocked while locked."""
        until = self.locked_until()
        if until is not None:
            raise LoginLocked(until)
        if hmac.compare_digest(given.encode(), expected.encode()):
            return True
        self.db.write(lambda s: s.add(Event(study_id=self.study_id, kind=FAILED, at=self._now(),
                                            detail={"address": address or "unknown"})))
        return False
