"""Withdrawal and erasure: a participant's data leave the study, and only the fact is kept (and the
removal of pilot data before a launch).

Consent texts promise that people may withdraw at any time and have their answers deleted; this
module is the one place that does it. Erasing removes every row about the person (answers, plan,
questionnaire, events, the participant row itself) in one transaction, and writes an `Audit` row
that says when and how, never whose or what. Exports then count withdrawals anonymously. After the
deletion the database forgets the rows on disk too (`Database.forget_deleted`: no copy stays in
SQLite's write-ahead log). What stays of a withdrawn or erased person is a keyed hash of their link's
id (`identity.withdrawn_marker`), so that the same link cannot start the study again as someone new.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from study.store.database import (Audit, Database, Event, Participant, PlanRow, QuestionnaireAnswer, Response,
                                  WithdrawnId, utcnow)
from study.store.identity import withdrawn_marker

HOW = ("participant", "admin page", "command line")


def withdraw(db: Database, study_id: int, participant_id: int, *, keep: bool, secret: bytes,
             now: Callable[[], datetime] = utcnow) -> None:
    """The participant withdraws: their answers are deleted, or with `keep` flagged withdrawn. Either
    way their link cannot start again (`secret` is the study's link secret, for the marker)."""
    def work(s: Session) -> None:
        external_id = s.scalar(select(Participant.external_id).where(Participant.id == participant_id,
                                                                      Participant.study_id == study_id))
        if external_id is None:
            raise LookupError(f"no participant {participant_id} in this study")
        if keep:
            s.execute(update(Participant).where(Participant.id == participant_id).values(withdrawn_at=now()))
        else:
            _delete_rows(s, study_id, participant_id, withdrawn_marker(secret, external_id))
        s.add(Audit(study_id=study_id, at=now(), action="withdrawn", how="participant", kept=keep))

    db.write(work)
    if not keep:
        db.forget_deleted()


def erase(db: Database, study_id: int, external_id: str, how: str, *, secret: bytes,
          now: Callable[[], datetime] = utcnow) -> bool:
    """Erase everything about the participant with this external id (on request); False if unknown.
    The link cannot start the study again afterwards."""
    if how not in HOW:
        raise ValueError(f"how must be one of {HOW}, got {how!r}")

    def work(s: Session) -> bool:
        participant_id = s.scalar(select(Participant.id).where(Participant.study_id == study_id,
                                                               Participant.external_id == external_id))
        if participant_id is None:
            return False
        _delete_rows(s, study_id, participant_id, withdrawn_marker(secret, external_id))
        s.add(Audit(study_id=study_id, at=now(), action="erased", how=how, kept=False))
        return True

    erased = db.write(work)
    if erased:
        db.forget_deleted()
    return erased


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
            _delete_rows(s, study_id, participant_id)
        return len(pilots)

    removed = db.write(work)
    db.forget_deleted()
    return removed


def _delete_rows(s: Session, study_id: int, participant_id: int, marker: str | None = None) -> None:
    """Delete every row about one participant; with `marker`, remember their link as withdrawn."""
    for table in (Response, PlanRow, QuestionnaireAnswer, Event):
        s.execute(delete(table).where(table.participant_id == participant_id))
    s.execute(delete(Participant).where(Participant.id == participant_id))
    if marker is not None and s.scalar(select(WithdrawnId.id).where(WithdrawnId.study_id == study_id,
                                                                    WithdrawnId.id_hash == marker)) is None:
        s.add(WithdrawnId(study_id=study_id, id_hash=marker))
