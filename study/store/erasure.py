"""Withdrawal and erasure: a participant's data leave the study, and only the fact is kept (and the
removal of pilot data before a launch).

Consent texts promise that people may withdraw at any time and have their answers deleted; this
module is the one place that does it. Erasing removes every row about the person (answers, plan,
questionnaire, events, the participant row itself) in one transaction, and writes an `Audit` row
that says when and how, never whose or what. Exports then count withdrawals anonymously.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from study.store.database import Audit, Database, Event, Participant, PlanRow, QuestionnaireAnswer, Response, utcnow

HOW = ("participant", "admin page", "command line")


def withdraw(db: Database, study_id: int, participant_id: int, *, keep: bool,
             now: Callable[[], datetime] = utcnow) -> None:
    """The participant withdraws: their answers are deleted, or with `keep` flagged withdrawn."""
    def work(s: Session) -> None:
        _check_in_study(s, study_id, participant_id)
        if keep:
            s.execute(update(Participant).where(Participant.id == participant_id).values(withdrawn_at=now()))
        else:
            _delete_rows(s, participant_id)
        s.add(Audit(study_id=study_id, at=now(), action="withdrawn", how="participant", kept=keep))

    db.write(work)


def erase(db: Database, study_id: int, external_id: str, how: str, now: Callable[[], datetime] = utcnow) -> bool:
    """Erase everything about the participant with this external id (on request); False if unknown."""
    if how not in HOW:
        raise ValueError(f"how must be one of {HOW}, got {how!r}")

    def work(s: Session) -> bool:
        participant_id = s.scalar(select(Participant.id).where(Participant.study_id == study_id,
                                                               Participant.external_id == external_id))
        if participant_id is None:
            return False
        _delete_rows(s, participant_id)
        s.add(Audit(study_id=study_id, at=now(), action="erased", how=how, kept=False))
        return True

    return db.write(work)


def release(db: Database, study_id: int, external_id: str) -> bool:
    """Let the next browser that opens this id's link continue it (its credential is forgotten)."""
    def work(s: Session) -> bool:
        done = s.execute(update(Participant).where(Participant.study_id == study_id,
                                                   Participant.external_id == external_id)
                         .values(credential_hash=None))
        return done.rowcount > 0

    return db.write(work)


def reset_pilot(db: Database, study_id: int) -> int:
    """Remove every pilot participant and their answers (before the real launch); returns how many."""
    def work(s: Session) -> int:
        pilots = s.scalars(select(Participant.id).where(Participant.study_id == study_id,
                                                        Participant.is_pilot.is_(True))).all()
        for participant_id in pilots:
            _delete_rows(s, participant_id)
        return len(pilots)

    return db.write(work)


def _check_in_study(s: Session, study_id: int, participant_id: int) -> None:
    if s.scalar(select(Participant.study_id).where(Participant.id == participant_id)) != study_id:
        raise LookupError(f"no participant {participant_id} in this study")


def _delete_rows(s: Session, participant_id: int) -> None:
    for table in (Response, PlanRow, QuestionnaireAnswer, Event):
        s.execute(delete(table).where(table.participant_id == participant_id))
    s.execute(delete(Participant).where(Participant.id == participant_id))
