"""A server process killed (SIGKILL) while writing answers loses none it acknowledged, and a
restart resumes every participant at their first unanswered trial."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from _study_fixtures import build_fake_study
from study.survey.session import SurveySession
from study.store.database import Participant, Response

ROOT = Path(__file__).resolve().parents[1]
KILL_AFTER = 20          # acknowledged answers before the kill
PARTICIPANTS = 4
SHORT_TASKS = """
[[tasks]]
type = "class_discrimination"
trials = 3

[[tasks]]
type = "agreement"
trials = 3
"""

# Answers round-robin for several participants and appends "participant trial" to the ack file
# only after answer() has returned, like a server replying to the browser.
CHILD = """
import sys
from study.survey.session import SurveySession
session = SurveySession(sys.argv[1])
credentials = {}   # what each participant's browser keeps after consenting
with open(sys.argv[2], "a", buffering=1) as ack:
    for turn in range(10_000):
        external_id = f"crash-{turn % int(sys.argv[3])}"
        state = session.enter(external_id, credential=credentials.get(external_id))
        if state.consented is None:
            state = session.consent(external_id, True)
            credentials[external_id] = state.credential
        trial = session.next_trial(state.participant_id)
        if trial is None:
            continue
        confidence = trial.confidence_options[0][0] if trial.confidence_options else None
        session.answer(state.participant_id, trial.trial_index, trial.options[0][0], 250, confidence)
        ack.write(f"{state.participant_id} {trial.trial_index}\\n")
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_loses_no_acknowledged_answer_and_restart_resumes(tmp_path):
    study_dir = build_fake_study(tmp_path, SHORT_TASKS, practice=1, attention=1)
    ack_file = tmp_path / "acks.txt"
    ack_file.touch()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(study_dir), str(ack_file), str(PARTICIPANTS)], env=env,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(ack_file.read_text().splitlines()) < KILL_AFTER:
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the child wrote too few answers in 60 s"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    acknowledged = {tuple(map(int, line.split())) for line in ack_file.read_text().splitlines()
                    if len(line.split()) == 2}
    assert len(acknowledged) >= KILL_AFTER
    with sqlite3.connect(study_dir / "study.db") as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    session = SurveySession(study_dir)            # the restarted server
    with session.db.read() as s:
        stored = set(s.execute(select(Response.participant_id, Response.trial_index)).all())
        people = s.scalars(select(Participant.id)).all()
    assert acknowledged <= stored                 # nothing acknowledged was lost
    assert len(people) == PARTICIPANTS
    for pid in people:
        answered = sorted(i for p, i in stored if p == pid)
        assert answered == list(range(len(answered)))          # answers went in plan order
        resumed = session.next_trial(pid)
        assert resumed is not None and resumed.trial_index == len(answered)
        assert session.progress(pid)[0] == len(answered)
    # ... and can finish from there.
    for pid in people[:1]:
        while (trial := session.next_trial(pid)) is not None:
            confidence = trial.confidence_options[0][0] if trial.confidence_options else None
            assert session.answer(pid, trial.trial_index, trial.options[0][0], 250, confidence).stored
        assert session.complete(pid, {}) == "DONE-1"
