"""The admin password, throttled per client address, with a ceiling for everyone.

Failed sign-ins are written to the study's event log with the time and the client's address (never
the password tried). After `MAX_FAILURES` failures from one address within `WINDOW`, that address may
not try again for `LOCKOUT` after its last failure: a visitor guessing at /admin locks out only
themselves, not the researcher. Someone guessing from many addresses at once meets a ceiling:
`MAX_FAILURES_ALL` failures from all addresses together within the window lock sign-in for everyone
for `LOCKOUT`. `camstudy admin-unlock STUDY` (`unlock`) lifts both at once. The database, not a
browser session, keeps the count, and each attempt is counted before its password is compared, so
parallel tabs or server processes do not multiply the attempts.

The address is the one the server saw, or behind a reverse proxy that `camstudy serve --trusted-proxies`
trusts, the client address the proxy forwarded (X-Forwarded-For; the web server applies it). A
browser on the server machine itself has no address of its own: `LOCAL`.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from study.store.database import Database, Event, Study, as_utc, utcnow

MAX_FAILURES = 10          # per client address within WINDOW
MAX_FAILURES_ALL = 100     # from all addresses together within WINDOW
WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=5)
FAILED = "admin_login_failed"
UNLOCKED = "admin_login_unlocked"
LOCAL = "local"


class LoginLocked(ValueError):
    """Too many failed sign-ins lately; `until` says when sign-in opens again, `everyone` whether the
    ceiling for all addresses was reached (else only this address is locked)."""

    def __init__(self, until: datetime, everyone: bool):
        who = "for everyone" if everyone else "from this address"
        super().__init__(f"sign-in is locked {who} until {until:%H:%M:%S} UTC after too many failed attempts")
        self.until, self.everyone = until, everyone


class AdminLogin:
    def __init__(self, db: Database, study_id: int, now: Callable[[], datetime] = utcnow):
        self.db, self.study_id, self._now = db, study_id, now

    def _locked_until(self, s, address: str) -> tuple[datetime, bool] | None:
        """(when sign-in opens again, whether for everyone), or None when `address` may try."""
        now = self._now()
        unlocked = s.scalar(select(func.max(Event.at)).where(Event.study_id == self.study_id, Event.kind == UNLOCKED))
        since = max(now - WINDOW, as_utc(unlocked)) if unlocked is not None else now - WINDOW
        failures = s.execute(select(Event.at, Event.detail).where(
            Event.study_id == self.study_id, Event.kind == FAILED, Event.at > since)
            .order_by(Event.at.desc()).limit(MAX_FAILURES_ALL)).all()
        mine = [f.at for f in failures if f.detail.get("address") == address]
        for count, moments, everyone in ((len(failures), [f.at for f in failures], True),
                                         (len(mine), mine, False)):
            limit = MAX_FAILURES_ALL if everyone else MAX_FAILURES
            if count >= limit and as_utc(moments[0]) + LOCKOUT > now:
                return as_utc(moments[0]) + LOCKOUT, everyone
        return None

    def check(self, given: str, expected: str, address: str | None) -> bool:
        """Whether `given` is the password; a failure is logged with `address` (None: `LOCAL`).
        LoginLocked while this address, or everyone, is locked.

        The attempt is counted as a failure before the password is compared, in the transaction that
        checks the lockout with the study's row locked, and taken back if the password was right: sign-ins
        sent at once from many tabs or processes are counted one after another, never all let through."""
        address = address or LOCAL

        def count_attempt(s) -> tuple[tuple[datetime, bool] | None, int | None]:
            s.execute(select(Study.id).where(Study.id == self.study_id).with_for_update())
            locked = self._locked_until(s, address)
            if locked is not None:
                return locked, None
            attempt = Event(study_id=self.study_id, kind=FAILED, at=self._now(), detail={"address": address})
            s.add(attempt)
            s.flush()
            return None, attempt.id

        locked, attempt = self.db.write(count_attempt)
        if locked is not None:
            raise LoginLocked(*locked)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return False
        self.db.write(lambda s: s.execute(delete(Event).where(Event.id == attempt)))
        return True

    def unlock(self) -> None:
        """Lift every lockout now (`camstudy admin-unlock`): failures before this moment no longer count."""
        self.db.write(lambda s: s.add(Event(study_id=self.study_id, kind=UNLOCKED, at=self._now(), detail={})))
