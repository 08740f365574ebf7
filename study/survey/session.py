"""The participant flow behind the Streamlit app: enter, consent, next trial, answer, complete.

Every call is one short database transaction, so the API is safe from many threads and
processes at once, and a reload or a server restart resumes a participant at their first
unanswered trial. A replayed answer is recognised and reported, but what guarantees that no
answer is stored twice, even when two writers race, is the UNIQUE(participant, trial)
constraint itself. A participant can only ever reach their own plan rows.

The answer path is built for many participants per process: a browser tab reads its participant's
plan once (`plan`), and then each answer is one write transaction with no reads (`submit`: the
answer, checked against the cached plan, and the next trial marked shown), and the next screen is
made from the cached plan and the built study.
No Streamlit here: the UI calls these methods and renders what they return. The built study
(`study.store.built_study`, loaded once) and the admin queries (`study.survey.monitor`) live apart.
"""
from __future__ import annotations

import hmac
import os
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Boolean, DateTime, Integer, String, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from study.store import erasure
from study.protocol import plans
from study.store.built_study import BuiltStudy
from study.store.identity import (PILOT_ENV, BadLink, check_external_id, holds_credential, is_pilot_link, link_secret,
                                  new_credential, new_resume_code, resume_code_hash, verify, withdrawn_marker)
from study.store.database import (Event, Participant, PlanRow, QuestionnaireAnswer, Response, Study, WithdrawnId,
                                  as_utc, open_study, utcnow)
from study.survey.stimulus_files import PublishedStimuli

MAX_RT_MS = 24 * 3600 * 1000
ABANDONED_AFTER = timedelta(hours=2)     # no answer for this long: the participant's slot is reused
FREE_TEXT_LIMIT = 5000                   # characters kept of a free-text questionnaire answer
RESUME_TRIES = 10                        # wrong resume codes for one id before only the admin can release it
RESUME_FAILED = "resume_failed"          # the event that counts them


class AlreadyCompleted(ValueError):
    """This external id has finished the study (or declined consent) and cannot start again.

    When the id finished, `completion_code` (and `redirect_url`, where the study has one) say
    what the participant was given at the end, so a reload in their own browser can show them
    again; after a refusal of consent both are None.
    """

    def __init__(self, message: str, completion_code: str | None = None,
                 redirect_url: str | None = None):
        super().__init__(message)
        self.completion_code, self.redirect_url = completion_code, redirect_url


class LinkInUse(ValueError):
    """The id consented in another browser, and this one does not hold its resume credential."""


class ConsentConflict(ValueError):
    """A consent answer that contradicts the one this id already gave (in another tab, say)."""


class WrongResumeCode(ValueError):
    """A resume code that is not the one shown at consent; `tries_left` before only the admin can help."""

    def __init__(self, tries_left: int):
        super().__init__(f"that is not the resume code of this link ({tries_left} tries left)")
        self.tries_left = tries_left


@dataclass(frozen=True)
class ParticipantState:
    """Where a participant stands. `participant_id` is None until they answer the consent page
    (no row exists before); `credential` is set when this call issued the browser a new resume
    credential, for it to keep (a cookie)."""
    participant_id: int | None
    external_id: str
    consented: bool | None
    completed: bool
    n_done: int
    n_total: int
    completion_code: str | None
    credential: str | None = None
    language: str | None = None      # the survey's language, chosen at consent
    condition: str | None = None     # the between-subject condition (method) assigned at consent
    resume_code: str | None = None   # set once, by the consent that issued it: for the participant to note


@dataclass(frozen=True)
class TrialView:
    """One trial as the participant sees it (display order already applied); `trial_id` names
    its template in the built study."""
    trial_index: int
    trial_id: int
    task: str
    is_practice: bool
    is_attention_check: bool
    prompt_md: str
    images: list[Path]
    captions: list[str]
    options: list[tuple[str, str]]          # empty: nothing to choose, the participant goes on
    confidence_options: list[tuple[str, str]]
    feedback_md: str | None                 # shown after a practice answer
    shown_at: datetime
    round: int | None = None                # the round of a utility task's trial (its plan row keeps it)


@dataclass(frozen=True)
class PlanEntry:
    """One trial of a participant's plan, as showing and answering it need it (`row_id` -1: a preview)."""
    row_id: int
    trial_index: int
    trial_id: int
    task: str
    is_practice: bool
    is_attention_check: bool
    display: dict


@dataclass
class ParticipantPlan:
    """A participant's plan and progress, read once when a browser tab enters (`SurveySession.plan`) and
    kept up to date by `SurveySession.submit`, so that showing and answering trials read nothing from the
    database. One per tab, not shared between threads; the database stays the truth: an answer another
    tab stored meanwhile is found by the UNIQUE constraint and the plan read again."""
    participant_id: int
    language: str | None
    entries: tuple[PlanEntry, ...]
    answered: set[int]
    shown_at: dict[int, datetime]

    @property
    def current(self) -> PlanEntry | None:
        """The first unanswered trial in plan order (None when all are answered)."""
        return next((e for e in self.entries if e.trial_index not in self.answered), None)

    @property
    def n_done(self) -> int:
        return len(self.answered)

    @property
    def n_total(self) -> int:
        return len(self.entries)

    def entry(self, trial_index: int) -> PlanEntry:
        if not 0 <= trial_index < len(self.entries):
            raise LookupError(f"participant {self.participant_id} has no trial {trial_index}")
        return self.entries[trial_index]


@dataclass(frozen=True)
class AnswerOutcome:
    """What became of an answer: `stored` now, or a `duplicate` of one stored before; `elsewhere` when
    that earlier answer came from another tab or process (not one this plan knew of)."""
    stored: bool
    duplicate: bool
    correct: bool | None
    elsewhere: bool = False


class SurveySession:
    """The survey of one study folder; cheap to create, share it between threads freely."""

    def __init__(self, study_dir: str | Path, clock: Callable[[], datetime] = utcnow):
        """`clock` gives the UTC time written into every timestamp; simulations pass a reproducible one."""
        self._now = clock
        folder = open_study(study_dir)
        self.study_dir, self.config, self.db, self.study_id = folder.path, folder.config, folder.database, folder.study_id
        self.built = BuiltStudy.load(folder)
        self.stimuli = PublishedStimuli(self.study_dir)       # the URLs pages load the pictures from
        self.pilot_run = bool(os.environ.get(PILOT_ENV))     # `camstudy serve --pilot`

    @cached_property
    def _secret(self) -> bytes:
        """The study's link-signing secret, made on first need (signed or pilot links)."""
        return link_secret(self.study_dir)

    @property
    def config_hash(self) -> str:
        return self.config.hash

    # --- participants -------------------------------------------------------------------------

    def enter(self, external_id: str | None, *, credential: str | None = None,
              signature: str | None = None) -> ParticipantState:
        """Who opens the link: a new person (no row yet: the consent page comes next), or a
        participant resumed by their id and the resume credential their browser keeps.

        Raises BadLink (no usable id, or a missing or wrong signature under `signed_links`),
        LinkInUse (the id consented in another browser; unless `allow_browser_change`), or
        AlreadyCompleted. A view by someone who has not consented is counted, nothing more.
        """
        external_id = self._external_id(external_id, signature)

        def work(s: Session) -> tuple[int | None, str | None]:
            known = s.execute(select(Participant.id, Participant.completed_at, Participant.consented,
                                     Participant.completion_code, Participant.credential_hash,
                                     Participant.withdrawn_at)
                              .where(Participant.study_id == self.study_id,
                                     Participant.external_id == external_id)).first()
            if known is None:
                if self._withdrawn(s, external_id):
                    raise AlreadyCompleted(f"participant {external_id!r} has already taken part in this study")
                s.add(Event(study_id=self.study_id, kind="viewed", detail={}, at=self._now()))
                return None, None
            if known.consented is False or known.withdrawn_at is not None:
                raise AlreadyCompleted(f"participant {external_id!r} has already taken part in this study")
            if known.completed_at is not None:
                # The code again only for the browser that holds the credential: an id alone (a released
                # one, one from before credentials, or `allow_browser_change`) does not show it.
                own = holds_credential(credential, known.credential_hash)
                code = known.completion_code if own else None
                raise AlreadyCompleted(f"participant {external_id!r} has already completed this study", code,
                                       self._redirect(code, external_id) if own else None)
            return known.id, self._resume(s, known, credential)

        participant_id, issued = self.db.write(work)
        if participant_id is None:
            return ParticipantState(None, external_id, None, False, 0, self.built.plan_length, None)
        return replace(self.state(participant_id), credential=issued)

    def state(self, participant_id: int) -> ParticipantState:
        with self.db.read() as s:
            p = self._participant(s, participant_id)
            done, total = self._counts(s, participant_id)
            return ParticipantState(p.id, p.external_id, p.consented, p.completed_at is not None,
                                    done, total, p.completion_code, language=p.language, condition=p.condition)

    def consent(self, external_id: str | None, agreed: bool, *, user_agent: str = "",
                context: dict[str, str] | None = None, credential: str | None = None,
                signature: str | None = None, pilot: str | bool | None = None,
                language: str | None = None) -> ParticipantState:
        """Record the consent page's answer; this is when a participant's row is made.

        Agreeing assigns the next free Latin-square slot (and with it the between-subject condition),
        writes the plan and issues the resume credential (returned in the state, for the browser to
        keep). A pilot participant (`pilot`: True, or a pilot link's token; everyone in a pilot run)
        is marked as such and holds no slot of the real participants': pilots take the slots in turn
        among themselves, so a pilot run sees every condition. A refusal stores the id, the refusal and
        its time only (no user agent, no link parameters, no event naming them) and ends the
        participant. Answering again the
        same way from the same browser changes nothing; a contradicting answer (declining in one
        tab after agreeing in another) is a ConsentConflict. `language` is the one the survey is
        shown in (one of the study's; None or another: the default), kept for the trials' wording
        and the export; a later answer from another tab does not change it.
        """
        agreed = bool(agreed)
        language = language if language in self.config.languages else self.config.language
        external_id = self._external_id(external_id, signature)
        pilot = self.is_pilot(external_id, pilot)
        built = self.built

        def work(s: Session) -> tuple[int, str | None, str | None]:
            known = s.execute(select(Participant.id, Participant.consented, Participant.credential_hash,
                                     Participant.completed_at, Participant.withdrawn_at)
                              .where(Participant.study_id == self.study_id,
                                     Participant.external_id == external_id)).first()
            if known is not None:
                if known.consented is False or known.withdrawn_at is not None or known.completed_at is not None:
                    raise AlreadyCompleted(f"participant {external_id!r} has already taken part in this study")
                if not agreed:
                    raise ConsentConflict("you already agreed to take part (in another tab or window); to stop "
                                          "now, use “Withdraw from the study”")
                return known.id, self._resume(s, known, credential), None
            if self._withdrawn(s, external_id):
                raise AlreadyCompleted(f"participant {external_id!r} has already taken part in this study")
            seed = plans.participant_seed(built.seed, external_id)
            token, digest = new_credential() if agreed else (None, None)
            code, code_digest = new_resume_code() if agreed else (None, None)
            person = Participant(study_id=self.study_id, external_id=external_id, seed=seed, consented=agreed,
                                 is_pilot=pilot,
                                 started_at=self._now(), link_params=dict(context or {}) if agreed else {},
                                 user_agent=(user_agent or "")[:1000] if agreed else "",
                                 consent_at=self._now() if agreed else None, credential_hash=digest,
                                 language=language if agreed else None, resume_code_hash=code_digest)
            s.add(person)
            s.flush()
            if agreed:
                # Taking the study row's lock first serialises slot assignment (SQLite and PostgreSQL).
                s.execute(update(Study).where(Study.id == self.study_id).values(consents=Study.consents + 1))
                person.slot = self._pilot_slot(s, person.id) if pilot else plans.first_free_slot(self._held_slots(s))
                person.condition = built.condition_of(person.slot)
                for index, planned in enumerate(built.plan(person.slot, seed)):
                    t = planned.trial
                    s.add(PlanRow(participant_id=person.id, trial_index=index, trial_id=t.id, task=t.task,
                                  image_id=t.image_id, model=t.model, model_b=t.model_b, method=t.method,
                                  method_b=t.method_b, target_class=t.target_class,
                                  is_practice=planned.is_practice, is_attention_check=planned.is_attention_check,
                                  display=planned.display))
            # A refusal is logged without whose it was: the row above is all that stays about a decliner.
            s.add(Event(study_id=self.study_id, participant_id=person.id if agreed else None, at=self._now(),
                        kind="consented" if agreed else "declined", detail={"slot": person.slot} if agreed else {}))
            return person.id, token, code

        try:
            participant_id, issued, code = self.db.write(work)
        except IntegrityError:      # the same id consented at the same moment elsewhere
            participant_id, issued, code = self.db.write(work)
        return replace(self.state(participant_id), credential=issued, resume_code=code)

    def resume_with_code(self, external_id: str | None, code: str, *, signature: str | None = None) -> ParticipantState:
        """A participant whose browser no longer holds its credential (another browser, cleared cookies)
        continues with the resume code shown at consent: this browser is issued a new credential (returned
        in the state), and the old one stops working. Each wrong code is counted; after RESUME_TRIES only
        the admin's release (or `camstudy release`) lets the link move. Raises WrongResumeCode, LinkInUse
        (no tries left), AlreadyCompleted, or BadLink."""
        external_id = self._external_id(external_id, signature)

        def work(s: Session) -> tuple[int, str] | int:
            known = s.execute(select(Participant.id, Participant.consented, Participant.completed_at,
                                     Participant.withdrawn_at, Participant.resume_code_hash)
                              .where(Participant.study_id == self.study_id,
                                     Participant.external_id == external_id)).first()
            if known is None or not known.consented or known.withdrawn_at is not None or known.completed_at is not None:
                raise AlreadyCompleted(f"participant {external_id!r} cannot be resumed")
            failures = s.scalar(select(func.count(Event.id)).where(Event.participant_id == known.id,
                                                                   Event.kind == RESUME_FAILED))
            if failures >= RESUME_TRIES:
                raise LinkInUse("too many wrong resume codes for this link; the researchers can release it")
            if known.resume_code_hash and hmac.compare_digest(resume_code_hash(code), known.resume_code_hash):
                token, digest = new_credential()
                s.execute(update(Participant).where(Participant.id == known.id).values(credential_hash=digest))
                return known.id, token
            s.add(Event(study_id=self.study_id, participant_id=known.id, kind=RESUME_FAILED, at=self._now()))
            return RESUME_TRIES - failures - 1

        outcome = self.db.write(work)
        if isinstance(outcome, int):
            raise WrongResumeCode(outcome)
        participant_id, token = outcome
        return replace(self.state(participant_id), credential=token)

    def withdraw(self, participant_id: int) -> None:
        """The participant withdraws: per the config's `on_withdraw`, their answers are deleted
        ("delete", the default) or kept flagged as withdrawn ("keep"); the session ends, and the link
        cannot start again."""
        erasure.withdraw(self.db, self.study_id, participant_id, keep=self.config.on_withdraw == "keep",
                         secret=self._secret, now=self._now)

    # --- trials -------------------------------------------------------------------------------

    def plan(self, participant_id: int) -> ParticipantPlan:
        """The participant's plan and what they answered so far, in one read (a tab keeps it)."""
        with self.db.read() as s:
            language = self._consented(s, participant_id).language
            rows = s.execute(select(PlanRow.id, PlanRow.trial_index, PlanRow.trial_id, PlanRow.task,
                                    PlanRow.is_practice, PlanRow.is_attention_check, PlanRow.display,
                                    PlanRow.shown_at)
                             .where(PlanRow.participant_id == participant_id).order_by(PlanRow.trial_index)).all()
            answered = set(s.scalars(select(Response.trial_index).where(Response.participant_id == participant_id)))
        entries = tuple(PlanEntry(r.id, r.trial_index, r.trial_id, r.task, r.is_practice, r.is_attention_check,
                                  r.display) for r in rows)
        shown = {r.trial_index: as_utc(r.shown_at) for r in rows if r.shown_at is not None}
        return ParticipantPlan(participant_id, language, entries, answered, shown)

    def show(self, plan: ParticipantPlan) -> TrialView | None:
        """The plan's current trial (None when all are answered); the first showing is stored. After
        `submit` the next trial is already marked shown, so this reads and writes nothing then."""
        entry = plan.current
        if entry is None:
            return None
        if entry.trial_index not in plan.shown_at:
            def work(s: Session) -> datetime:
                s.execute(update(PlanRow).where(PlanRow.id == entry.row_id, PlanRow.shown_at.is_(None))
                          .values(shown_at=self._now()))
                return s.scalar(select(PlanRow.shown_at).where(PlanRow.id == entry.row_id))
            plan.shown_at[entry.trial_index] = as_utc(self.db.write(work))
        return self._view(entry, plan.shown_at[entry.trial_index], plan.language)

    def submit(self, plan: ParticipantPlan, trial_index: int, response: str, rt_ms: int,
               confidence: str | None = None) -> AnswerOutcome:
        """Store an answer once, in one write transaction that reads nothing: the answer (checked against
        the cached plan, for a participant who has consented and not withdrawn) and the next trial marked
        shown. `rt_ms` is the browser's response time; the server's own interval since the trial was
        shown is stored beside it as `server_rt_ms`. An answer to a trial this plan knows answered is a
        `duplicate`; one another tab stored meanwhile is a duplicate `elsewhere` (and the plan is read again).
        """
        if isinstance(rt_ms, bool) or not isinstance(rt_ms, int) or not 0 <= rt_ms <= MAX_RT_MS:
            raise ValueError(f"rt_ms must be a whole number of milliseconds between 0 and {MAX_RT_MS}, got {rt_ms!r}")
        entry = plan.entry(trial_index)
        participant_id = plan.participant_id
        if trial_index in plan.answered:
            with self.db.read() as s:
                return self._stored(s, participant_id, trial_index, elsewhere=False)
        shown_at = plan.shown_at.get(trial_index)
        if shown_at is None:
            raise ValueError(f"trial {trial_index} has not been shown yet; call next_trial first")
        spec = self.built.trial(entry.trial_id).spec
        correct, rating = self._scored(spec, entry, response, confidence)
        now = self._now()
        server_rt_ms = min(max(round((now - shown_at).total_seconds() * 1000), 0), MAX_RT_MS)
        following = next((e for e in plan.entries[trial_index + 1:] if e.trial_index not in plan.answered), None)
        values = {"participant_id": (participant_id, Integer), "trial_index": (trial_index, Integer),
                  "plan_row_id": (entry.row_id, Integer), "response": (response, String),
                  "correct": (correct, Boolean), "rating": (rating, Integer), "rt_ms": (rt_ms, Integer),
                  "server_rt_ms": (server_rt_ms, Integer),
                  "confidence": (int(confidence) if confidence is not None else None, Integer),
                  "answered_at": (now, DateTime(timezone=True))}

        def work(s: Session) -> bool:
            # INSERT ... SELECT FROM participants: the answer goes in only while its participant may answer.
            stored = s.execute(insert(Response).from_select(
                list(values), select(*(literal(v, kind).label(k) for k, (v, kind) in values.items()))
                .where(Participant.id == participant_id, Participant.consented.is_(True),
                       Participant.withdrawn_at.is_(None))).returning(Response.id)).first()
            if stored is None:
                raise ValueError(f"participant {participant_id} has withdrawn or not consented; nothing stored")
            if following is None or following.trial_index in plan.shown_at:
                return False
            marked = s.execute(update(PlanRow).where(PlanRow.id == following.row_id, PlanRow.shown_at.is_(None))
                               .values(shown_at=now))
            return marked.rowcount == 1

        try:
            marked = self.db.write(work)
        except IntegrityError:    # another tab or process stored this trial's answer first
            fresh = self.plan(participant_id)
            plan.answered, plan.shown_at = fresh.answered, fresh.shown_at
            with self.db.read() as s:
                return self._stored(s, participant_id, trial_index, elsewhere=True)
        plan.answered.add(trial_index)
        if marked:
            plan.shown_at[following.trial_index] = now
        return AnswerOutcome(stored=True, duplicate=False, correct=correct)

    def next_trial(self, participant_id: int) -> TrialView | None:
        """The first unanswered trial in plan order (None when all are answered)."""
        return self.show(self.plan(participant_id))

    def answer(self, participant_id: int, trial_index: int, response: str, rt_ms: int,
               confidence: str | None = None) -> AnswerOutcome:
        """Store an answer once; a replay changes nothing and reports `duplicate=True`. (`submit` with a
        plan read for this one answer.)"""
        return self.submit(self.plan(participant_id), trial_index, response, rt_ms, confidence)

    def progress(self, participant_id: int) -> tuple[int, int]:
        with self.db.read() as s:
            self._participant(s, participant_id)
            return self._counts(s, participant_id)

    # --- the end ------------------------------------------------------------------------------

    def complete(self, participant_id: int, questionnaire: dict[str, str]) -> str:
        """Store the questionnaire and finish; returns the completion code (idempotent)."""
        answers = self._questionnaire(questionnaire)

        def work(s: Session) -> str:
            p = self._consented(s, participant_id)
            if p.completed_at is not None:
                return p.completion_code
            done, total = self._counts(s, participant_id)
            if done < total:
                raise ValueError(f"participant {p.external_id!r} still has {total - done} of {total} trials to answer")
            code = self.config.completion_code or secrets.token_hex(4).upper()
            s.execute(update(Participant).where(Participant.id == p.id)
                      .values(completed_at=self._now(), completion_code=code))
            s.add_all(QuestionnaireAnswer(participant_id=p.id, key=k, value=v) for k, v in answers.items())
            s.add(Event(study_id=self.study_id, participant_id=p.id, kind="completed", detail={}))
            return code

        return self.db.write(work)

    def redirect_url(self, participant_id: int) -> str | None:
        with self.db.read() as s:
            p = self._participant(s, participant_id)
            if p.completed_at is None:
                return None
            return self._redirect(p.completion_code, p.external_id)

    def _redirect(self, code: str, external_id: str) -> str | None:
        if not self.config.redirect_url:
            return None
        return self.config.redirect_url.format(code=quote(code, safe=""), pid=quote(external_id, safe=""))

    # --- helpers ------------------------------------------------------------------------------

    def _external_id(self, external_id: str | None, signature: str | None) -> str:
        """The checked id of a link; a fresh anonymous one where the config allows links without."""
        if external_id is None or not str(external_id).strip():
            if not self.config.allow_anonymous:
                raise BadLink("this study needs a participant id in the link (PROLIFIC_PID or pid)")
            return "anon-" + secrets.token_hex(8)
        external_id = check_external_id(str(external_id).strip())
        if self.config.signed_links and not verify(self._secret, external_id, signature):
            raise BadLink("this link is not signed for this study; please use the link you were given")
        return external_id

    def is_pilot(self, external_id: str, pilot: str | bool | None) -> bool:
        """A pilot participant: in a pilot run (`serve --pilot`), with a pilot link's token, or `True`
        from code (tests, the simulator). Anything else, such as `&pilot=1` typed into a link, is not."""
        if self.pilot_run or pilot is True:
            return True
        return isinstance(pilot, str) and is_pilot_link(self._secret, external_id, pilot)

    def _resume(self, s: Session, known, credential: str | None) -> str | None:
        """Let a consented participant continue in this browser, or refuse (LinkInUse).

        The browser must hold the credential issued at consent, unless the config allows changing
        browsers or the admin released the id; the first browser to come back after a release
        is issued a new credential (returned), which binds the id to it again."""
        if known.credential_hash is None or self.config.allow_browser_change:
            if known.credential_hash is not None:
                return None
            token, digest = new_credential()
            s.execute(update(Participant).where(Participant.id == known.id).values(credential_hash=digest))
            return token
        if not holds_credential(credential, known.credential_hash):
            raise LinkInUse("this link is in use in another browser")
        return None

    def _questionnaire(self, answers: dict[str, str]) -> dict[str, str]:
        """The answers checked; free text longer than FREE_TEXT_LIMIT is cut there, not refused, so
        that a long comment never stops anyone from finishing (the form shows the limit as they type)."""
        items = {q.key: q for q in self.config.questionnaire}
        clean = {}
        for key, value in (answers or {}).items():
            if key not in items:
                raise ValueError(f"unknown questionnaire item {key!r} (known: {', '.join(items) or 'none'})")
            if not isinstance(value, str):
                raise ValueError(f"answer to {key!r} must be text, got {type(value).__name__}")
            if items[key].options is not None and value not in items[key].options:
                raise ValueError(f"answer to {key!r} must be one of {items[key].options}, got {value!r}")
            clean[key] = value[:FREE_TEXT_LIMIT]
        return clean

    def _scored(self, spec, entry: PlanEntry, response: str, confidence: str | None) -> tuple[bool | None, int | None]:
        """(correct, rating) of an answer, after checking it is one of the trial's options (and has a
        confidence exactly where the trial asks for one)."""
        _, _, options = spec.view(entry.display)
        if response not in ({value for value, _ in options} if options else {""}):
            raise ValueError(f"response {response!r} is not an option of trial {entry.trial_index} "
                             f"({', '.join(v for v, _ in options)})")
        confidence_values = [v for v, _ in spec.confidence_options]
        if confidence_values and confidence not in confidence_values:
            raise ValueError(f"trial {entry.trial_index} asks for a confidence among {confidence_values}, "
                             f"got {confidence!r}")
        if not confidence_values and confidence is not None:
            raise ValueError(f"trial {entry.trial_index} asks no confidence, got {confidence!r}")
        return spec.score(entry.display, response)

    def _withdrawn(self, s: Session, external_id: str) -> bool:
        """Whether this link's participant withdrew or was erased (only a keyed hash of it is kept)."""
        return s.scalar(select(WithdrawnId.id).where(WithdrawnId.study_id == self.study_id,
                                                     WithdrawnId.id_hash == withdrawn_marker(self._secret,
                                                                                             external_id))) is not None

    def _participant(self, s: Session, participant_id: int):
        """The participant's row (plain columns: cheap, and never an object to mutate by accident)."""
        p = s.execute(select(Participant.id, Participant.study_id, Participant.external_id, Participant.seed,
                             Participant.consented, Participant.completed_at, Participant.completion_code,
                             Participant.withdrawn_at, Participant.language, Participant.condition)
                      .where(Participant.id == participant_id)).first()
        if p is None or p.study_id != self.study_id:
            raise LookupError(f"no participant {participant_id} in this study")
        return p

    def _consented(self, s: Session, participant_id: int):
        p = self._participant(s, participant_id)
        if p.consented is not True:
            raise ValueError(f"participant {p.external_id!r} has not given consent")
        if p.withdrawn_at is not None:
            raise ValueError(f"participant {p.external_id!r} has withdrawn from the study")
        return p

    def _held_slots(self, s: Session) -> list[int]:
        """Slots of participants who finished or were active within ABANDONED_AFTER.

        Someone who consented and then left would otherwise keep their cells short of answers
        for good; after that time their slot goes to the next participant (if they come back,
        they simply share it).
        """
        last_answer = (select(func.max(Response.answered_at))
                       .where(Response.participant_id == Participant.id).scalar_subquery())
        return s.scalars(select(Participant.slot).where(
            Participant.study_id == self.study_id, Participant.slot.is_not(None), Participant.is_pilot.is_(False),
            or_(Participant.completed_at.is_not(None),
                func.coalesce(last_answer, Participant.consent_at) >= self._now() - ABANDONED_AFTER))).all()

    def _pilot_slot(self, s: Session, participant_id: int) -> int:
        """Pilots take slots 0, 1, 2, ... in the order they consent, apart from real participants."""
        return s.scalar(select(func.count(Participant.id)).where(
            Participant.study_id == self.study_id, Participant.is_pilot.is_(True), Participant.consented.is_(True),
            Participant.id < participant_id))

    def _counts(self, s: Session, participant_id: int) -> tuple[int, int]:
        """(answered, plan length); every plan has the same length, also before consent."""
        done = s.scalar(select(func.count(Response.id)).where(Response.participant_id == participant_id))
        return done, self.built.plan_length

    def _stored(self, s: Session, participant_id: int, trial_index: int, elsewhere: bool) -> AnswerOutcome:
        correct = s.scalar(select(Response.correct).where(Response.participant_id == participant_id,
                                                          Response.trial_index == trial_index))
        return AnswerOutcome(stored=False, duplicate=True, correct=correct, elsewhere=elsewhere)

    def preview(self, trial_id: int, seed: int = 0, language: str | None = None) -> TrialView:
        """Trial `trial_id` as a participant would see it (one seeded display order), for the admin's
        preview; nothing is read from or written to any participant's records."""
        template = self.built.trial(trial_id)
        entry = PlanEntry(-1, -1, trial_id, template.task, template.role == "practice", template.role == "attention",
                          template.spec.randomise(random.Random(f"{seed}|{trial_id}")))
        return self._view(entry, self._now(), language)

    def _view(self, row: PlanEntry, shown_at: datetime, language: str | None) -> TrialView:
        spec = self.built.trial(row.trial_id).spec_in(language)
        stimuli, captions, options = spec.view(row.display)
        return TrialView(
            trial_index=row.trial_index, trial_id=row.trial_id, task=row.task, is_practice=row.is_practice,
            is_attention_check=row.is_attention_check, prompt_md=spec.prompt_md,
            images=[self.built.stimulus_path(i) for i in stimuli], captions=captions,
            options=options, confidence_options=list(spec.confidence_options),
            feedback_md=spec.feedback_md if row.is_practice else None, shown_at=shown_at,
            round=row.display.get("round"))
