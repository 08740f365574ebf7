"""Real participants: withdrawal and erasure leave no trace but a count, refusals keep nothing else,
signed links, the admin sign-in lockout, spreadsheet-safe free text, and the schema migration."""
from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from sqlalchemy import func, select

from _study_fixtures import build_fake_study
from study.store import erasure
from study.survey.admin_login import MAX_FAILURES, MAX_FAILURES_ALL, AdminLogin, LoginLocked
from study.cli import main
from study.results.export import export_tables, write_exports
from study.store.identity import BadLink, SIGNATURE_PARAM
from study.survey.session import AlreadyCompleted, SurveySession
from study.store.database import Audit, Event, Participant, PlanRow, Response, WithdrawnId

TASKS = """
[[tasks]]
type = "agreement"
trials = 3
"""


def finish(session, external_id, questionnaire=None):
    state = session.consent(external_id, True, user_agent="Browser/1.0")
    while (trial := session.next_trial(state.participant_id)) is not None:
        confidence = trial.confidence_options[0][0] if trial.confidence_options else None
        session.answer(state.participant_id, trial.trial_index, trial.options[0][0], 900, confidence)
    session.complete(state.participant_id, questionnaire or {})
    return state


def rows_of(session, participant_id):
    with session.db.read() as s:
        return {table.__name__: s.scalar(select(func.count()).select_from(table)
                                         .where(table.participant_id == participant_id))
                for table in (Response, PlanRow, Event)}


@pytest.fixture
def study(tmp_path):
    return build_fake_study(tmp_path, TASKS, practice=1, attention=1)


def test_withdrawal_deletes_everything_and_exports_only_count_it(study):
    session = SurveySession(study)
    finish(session, "stays")
    leaving = session.consent("leaves", True)
    trial = session.next_trial(leaving.participant_id)
    session.answer(leaving.participant_id, trial.trial_index, trial.options[0][0], 900,
                   trial.confidence_options[0][0] if trial.confidence_options else None)
    session.withdraw(leaving.participant_id)
    assert rows_of(session, leaving.participant_id) == {"Response": 0, "PlanRow": 0, "Event": 0}
    tables = export_tables(study, n_resamples=50)
    assert "leaves" not in set(tables["participants"]["external_id"])
    assert "leaves" not in set(tables["responses"]["external_id"])
    assert tables["withdrawals"].to_dict("records") == [
        {"action": "withdrawn", "how": "participant", "answers_kept": False, "n": 1}]
    with session.db.read() as s:
        audit = s.scalars(select(Audit)).one()
    assert audit.action == "withdrawn" and not hasattr(audit, "external_id")
    with pytest.raises(AlreadyCompleted):                           # the link cannot start over as someone new
        session.enter("leaves")
    with pytest.raises(AlreadyCompleted):
        session.consent("leaves", True)
    with session.db.read() as s:                                    # of the id only a keyed hash is kept
        [marker] = s.scalars(select(WithdrawnId.id_hash)).all()
    assert "leaves" not in marker and len(marker) == 64


def test_withdrawal_can_keep_the_answers_flagged_and_excluded(tmp_path):
    session = SurveySession(build_fake_study(tmp_path, TASKS, practice=0, attention=0,
                                             extra='on_withdraw = "keep"'))
    state = session.consent("keeper", True)
    trial = session.next_trial(state.participant_id)
    session.answer(state.participant_id, trial.trial_index, trial.options[0][0], 900,
                   trial.confidence_options[0][0] if trial.confidence_options else None)
    session.withdraw(state.participant_id)
    with pytest.raises(ValueError, match="withdrawn"):
        session.next_trial(state.participant_id)
    with pytest.raises(AlreadyCompleted):
        session.enter("keeper", credential=state.credential)
    tables = export_tables(session.study_dir, n_resamples=50)
    person = tables["participants"].set_index("external_id").loc["keeper"]
    assert person["withdrawn"] and person["excluded"]
    assert tables["responses"]["excluded"].all()
    assert tables["withdrawals"]["answers_kept"].tolist() == [True]


def test_erasure_on_request_from_the_command_line_and_its_audit(study, capsys):
    session = SurveySession(study)
    finish(session, "forget-me")
    assert main(["erase", str(study), "forget-me"]) == 0
    assert "forget-me" not in set(export_tables(study, n_resamples=50)["participants"]["external_id"])
    assert main(["erase", str(study), "forget-me"]) == 2            # nothing (left) to erase: one line
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no participant 'forget-me'" in err
    with session.db.read() as s:
        assert [(a.action, a.how) for a in s.scalars(select(Audit))] == [("erased", "command line")]
    with pytest.raises(ValueError, match="how must be"):
        erasure.erase(session.db, session.study_id, "x", "by magic", secret=b"k")


def test_erasure_leaves_no_copy_in_the_database_files_and_they_are_owner_only(study):
    session = SurveySession(study)
    finish(session, "ERASE-ME-7788", {"comments": "SECRET-COMMENT-1234"})
    finish(session, "stays-7788")
    files = [study / "study.db", study / "study.db-wal", study / "study.db-shm"]
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files if f.exists())   # no other account reads them
    assert b"SECRET-COMMENT-1234" in b"".join(f.read_bytes() for f in files if f.exists())   # while it is there
    with session.db.read():                        # a reader open elsewhere: the checkpoint waits for it to end
        pass
    assert main(["erase", str(study), "ERASE-ME-7788"]) == 0
    on_disk = b"".join(f.read_bytes() for f in files if f.exists())
    assert b"SECRET-COMMENT-1234" not in on_disk and b"ERASE-ME-7788" not in on_disk
    assert not (study / "study.db-wal").exists() or (study / "study.db-wal").stat().st_size == 0
    assert b"stays-7788" in on_disk


def test_a_refusal_is_exported_as_declined_with_nothing_else(study):
    session = SurveySession(study)
    session.consent("no-thanks", False, user_agent="Browser/1.0", context={"STUDY_ID": "s"})
    finish(session, "yes-please")
    people = export_tables(study, n_resamples=50)["participants"].set_index("external_id")
    assert people.loc["no-thanks", "consent"] == "declined"
    assert pd.isna(people.loc["no-thanks", "consent_at"]) and people.loc["no-thanks", "user_agent"] in ("", None)
    assert people.loc["yes-please", "consent"] == "agreed" and not pd.isna(people.loc["yes-please", "consent_at"])


def test_free_text_cannot_run_as_a_spreadsheet_formula(tmp_path):
    study = build_fake_study(tmp_path, TASKS, practice=0, attention=0)
    session = SurveySession(study)
    finish(session, "typist", {"comments": '=HYPERLINK("http://evil.example","x")'})
    finish(session, "minus", {"comments": "-1 stars"})
    out = tmp_path / "export"
    write_exports(study, out)
    text = (out / "questionnaire.csv").read_text()
    assert "'=HYPERLINK" in text and "'-1 stars" in text
    assert ",=HYPERLINK" not in text


def test_signed_links_are_required_when_the_config_says_so(tmp_path, capsys):
    study = build_fake_study(tmp_path, TASKS, extra="signed_links = true")
    assert main(["links", str(study), "--n", "3", "--base-url", "https://lab.example/survey"]) == 0
    links = capsys.readouterr().out.split()
    assert len(links) == 3 and len(set(links)) == 3
    params = dict(part.split("=") for part in links[0].split("?")[1].split("&"))
    session = SurveySession(study)
    assert session.enter(params["pid"], signature=params[SIGNATURE_PARAM]).participant_id is None
    good = params[SIGNATURE_PARAM]
    one_off = good[:-1] + ("1" if good[-1] == "0" else "0")  # differs in the last character, always
    for signature in (None, "0" * 32, one_off):
        with pytest.raises(BadLink, match="not signed"):
            session.enter(params["pid"], signature=signature)
    with pytest.raises(BadLink):
        session.consent("made-up", True, signature=params[SIGNATURE_PARAM])
    assert (study / ".link-secret").stat().st_mode & 0o077 == 0     # readable by its owner only


def test_admin_sign_in_locks_one_address_after_ten_failures_and_everyone_only_past_a_ceiling(study):
    session = SurveySession(study)
    now = [datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)]
    login = AdminLogin(session.db, session.study_id, now=lambda: now[0])
    other_tab = AdminLogin(session.db, session.study_id, now=lambda: now[0])
    for attempt in range(MAX_FAILURES):
        assert not (login if attempt % 2 else other_tab).check(f"guess-{attempt}", "s3cret", "10.0.0.7")
    with pytest.raises(LoginLocked) as locked:
        other_tab.check("s3cret", "s3cret", "10.0.0.7")         # even the right password, from that address
    assert not locked.value.everyone
    assert login.check("s3cret", "s3cret", "10.0.0.8")           # the researcher elsewhere is not locked out
    now[0] += timedelta(minutes=5, seconds=1)
    assert login.check("s3cret", "s3cret", "10.0.0.7")
    with session.db.read() as s:
        logged = s.scalars(select(Event.detail).where(Event.kind == "admin_login_failed")).all()
    assert len(logged) == MAX_FAILURES and all(d == {"address": "10.0.0.7"} for d in logged)
    assert not any("guess" in str(d) for d in logged)           # never the password tried
    # Guessing from many addresses meets the ceiling: then everyone waits, until admin-unlock.
    for attempt in range(MAX_FAILURES_ALL - MAX_FAILURES):        # with the ten above, within the window
        assert not login.check("guess", "s3cret", f"10.1.{attempt // 200}.{attempt % 200}")
    with pytest.raises(LoginLocked) as locked:
        login.check("s3cret", "s3cret", "10.9.9.9")
    assert locked.value.everyone
    assert main(["admin-unlock", str(study)]) == 0
    assert login.check("s3cret", "s3cret", "10.9.9.9")
    assert not login.check("wrong", "s3cret", None)              # a browser on the server itself
    with session.db.read() as s:
        assert s.scalars(select(Event.detail).where(Event.kind == "admin_login_failed")
                         .order_by(Event.id.desc())).first() == {"address": "local"}


def test_sign_ins_sent_at_once_are_counted_one_after_another(study):
    """Thirty guesses from one address at the same moment (tabs or processes): ten are compared, the rest
    meet the lockout; none slips between another's lockout check and its failure being logged."""
    session = SurveySession(study)
    start, outcomes = threading.Barrier(30), []

    def guess(n: int) -> None:
        login = AdminLogin(session.db, session.study_id)
        start.wait()
        try:
            outcomes.append(login.check(f"guess-{n}", "s3cret", "10.0.0.9"))
        except LoginLocked:
            outcomes.append("locked")

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(False) == MAX_FAILURES and outcomes.count("locked") == 30 - MAX_FAILURES


def test_a_round_one_database_is_migrated_in_place(study):
    finish(SurveySession(study), "finished-v1")
    database = study / "study.db"
    with sqlite3.connect(database) as raw:
        for column in ("credential_hash", "link_params", "withdrawn_at", "condition", "is_pilot", "language"):
            raw.execute(f"ALTER TABLE participants DROP COLUMN {column}")
        raw.execute("DROP TABLE audit")
        raw.execute("UPDATE schema_version SET version = 1")
        study_id = raw.execute("SELECT id FROM studies").fetchone()[0]
        for external_id, consented in (("opened-only", None), ("declined-v1", 0)):   # round 1 made both
            raw.execute("INSERT INTO participants (study_id, external_id, seed, consented, consent_at, started_at, "
                        "user_agent) VALUES (?, ?, 1, ?, '2026-01-01 10:00:00', '2026-01-01 10:00:00', 'UA')",
                        (study_id, external_id, consented))
    from study.store import database as storage
    storage._open.clear()                                       # a fresh server process
    session = SurveySession(study)
    with session.db.read() as s:
        people = {p.external_id: p for p in s.scalars(select(Participant))}
    assert "opened-only" not in people                          # rows are made at consent now
    assert people["declined-v1"].user_agent == "" and people["declined-v1"].consent_at is None
    with pytest.raises(AlreadyCompleted) as closed:             # no credential from round 1: no code for an id alone
        session.enter("finished-v1")
    assert closed.value.completion_code is None
    state = session.consent("after-upgrade", True)
    assert session.enter("after-upgrade", credential=state.credential).participant_id == state.participant_id
    session.withdraw(state.participant_id)
    with session.db.read() as s:
        assert s.scalar(select(func.count(Audit.id))) == 1
        assert s.scalar(select(func.count(Participant.id)).where(Participant.external_id == "after-upgrade")) == 0


def test_odd_signatures_are_refused_not_crashed_on(tmp_path):
    study = build_fake_study(tmp_path, TASKS, extra="signed_links = true")
    session = SurveySession(study)
    for signature in ("ü" * 32, "", "0" * 500):
        with pytest.raises(BadLink):
            session.enter("P-1", signature=signature)
    from study.store.identity import is_pilot_link
    assert not is_pilot_link(b"secret", "P-2", "ß" * 32)                # an odd pilot token is just not one


def test_signed_links_and_anonymous_entry_exclude_each_other(tmp_path):
    from _study_fixtures import write_config
    from study.protocol.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="signed_links.*anonymous"):
        load_config(write_config(tmp_path, TASKS, anonymous=True, extra="signed_links = true"))
