"""Synthetic study results in the export's tidy format, with effects known in advance.

`synthetic_results()` returns (responses, participants) frames shaped like responses.csv and
participants.csv: 8 participants, a rating task over three methods, a class-discrimination
task over two methods, and a compare task; method "gradcam" is made better than "cam".
"""
from __future__ import annotations

import numpy as np
import pandas as pd

METHODS = ("cam", "gradcam", "scorecam")
IMAGES = tuple(f"img{i}" for i in range(6))
MODEL = "efficientnet_lite0"


def synthetic_results(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = []
    people = []
    start = pd.Timestamp("2026-11-22T10:00:00")
    for p in range(8):
        pid = p + 1
        index = 0

        def add(task, image, method, method_b="", **answer):
            nonlocal index
            shown = start + pd.Timedelta(minutes=10 * p, seconds=20 * index)
            rt = answer.pop("rt_ms", int(rng.integers(800, 4000)))
            rows.append({
                "study_id": 1, "participant_id": pid, "external_id": f"SIM-{pid:03d}" if p < 4 else f"PRO{pid}",
                "trial_index": index, "task": task, "image_id": image, "model": MODEL,
                "method": method, "method_b": method_b or None, "target_class": "tabby",
                "response": answer.get("response"), "correct": answer.get("correct"),
                "confidence": answer.get("confidence"), "rating": answer.get("rating"),
                "rt_ms": rt, "shown_at": shown, "answered_at": shown + pd.Timedelta(milliseconds=rt),
                "is_practice": answer.get("is_practice", False),
                "is_attention_check": answer.get("is_attention_check", False), "excluded": False,
            })
            index += 1

        add("rating", "img0", "gradcam", response="4", rating=4, is_practice=True)
        for i, image in enumerate(IMAGES):
            method = METHODS[(i + p) % 3]
            rating = int(np.clip(2 + METHODS.index(method) + rng.integers(-1, 2), 1, 5))
            add("rating", image, method, response=str(rating), rating=rating)
        for i, image in enumerate(IMAGES[:4]):
            method = ("cam", "gradcam")[(i + p) % 2]
            correct = bool(rng.random() < (0.5 if method == "cam" else 0.9))
            add("class_discrimination", image, method, response="A" if correct else "B", correct=correct)
        for image in IMAGES[:3]:
            left, right = ("cam", "gradcam") if rng.random() < 0.5 else ("gradcam", "cam")
            u = rng.random()
            chosen = "gradcam" if u < 0.6 else ("cam" if u < 0.8 else "same")
            add("compare", image, left, right, response=chosen)
        # Attention check: participant 6 fails it; participant 7 answers one trial too fast.
        passed = pid != 6
        add("rating", "img5", "gradcam", response="5" if passed else "1", rating=5 if passed else 1,
            correct=passed, is_attention_check=True)
        if pid == 7:
            rows[-2]["rt_ms"] = 120
        people.append({
            "participant_id": pid, "external_id": rows[-1]["external_id"], "seed": 1000 + pid,
            "consent_at": start + pd.Timedelta(minutes=10 * p),
            "started_at": start + pd.Timedelta(minutes=10 * p, seconds=5),
            # Participant 8 never finished.
            "completed_at": None if pid == 8 else start + pd.Timedelta(minutes=10 * p + 9),
            "completion_code": None if pid == 8 else "C0DE", "n_answered": index,
            "attention_passed": True, "excluded": False, "user_agent": "pytest <script>",
        })
    return pd.DataFrame(rows), pd.DataFrame(people)


def synthetic_faithfulness(responses: pd.DataFrame) -> pd.DataFrame:
    """Deletion AUC per (image, method) that tracks the method's quality, plus noise."""
    rng = np.random.default_rng(11)
    rows = []
    for image in IMAGES:
        for method in METHODS:
            rows.append({"image_id": image, "model": MODEL, "method": method, "target_class": 281,
                         "metric": "deletion_auc", "value": 0.3 - 0.05 * METHODS.index(method) + rng.normal(0, 0.02),
                         "params": '{"step": 224}'})
    return pd.DataFrame(rows)


STUDY_TOML = """\
name = "Export <check> & \\"quotes\\""
seed = 3
images = "bundled"
methods = ["cam", "gradcam", "scorecam"]
attention_checks = 1

[text]
consent_md = "Consent."
instructions_md = "Instructions."
debrief_md = "Thanks."

[exclusion]
min_rt_ms = 300

[[tasks]]
type = "rating"

[[tasks]]
type = "class_discrimination"
methods = ["cam", "gradcam"]

[[tasks]]
type = "compare"
methods = ["cam", "gradcam"]
"""


def populate_study(folder, seed: int = 0):
    """A study folder (study.toml, stimuli/, study.db) holding `synthetic_results()`, written
    through the ORM models of study.store.database, as `camstudy build` plus a survey would leave it."""
    from pathlib import Path

    from PIL import Image as PILImage

    from study.protocol.config import load_config
    from study.store.database import (Image, Model, Participant, PlanRow, QuestionnaireAnswer, Response,
                                      Stimulus, Study, Trial, open_database)

    folder = Path(folder)
    (folder / "stimuli").mkdir(parents=True, exist_ok=True)
    (folder / "study.toml").write_text(STUDY_TOML)
    config = load_config(folder / "study.toml")
    responses, participants = synthetic_results(seed)
    database = open_database(config.database(folder))

    def fill(session):
        study = Study(name=config.name, config_hash=config.hash, config_toml=STUDY_TOML,
                      schema_version=1, seed=config.seed)
        session.add(study)
        session.flush()
        session.add(Model(study_id=study.id, name=MODEL, n_classes=1000,
                          categories=[f"class {i}" for i in range(1000)]))
        refs = {}
        for k, image in enumerate(IMAGES):
            row = Image(study_id=study.id, image_id=image, source="synthetic", width=32, height=32,
                        labels=[281], boxes=[[0, 0, 32, 32]], predictions={MODEL: [[281, 0.9]]})
            session.add(row)
            session.flush()
            refs[image] = row.id
            for j, method in enumerate(METHODS):
                path = f"stimuli/{image}_{method}.png"
                PILImage.new("RGB", (32, 32), (40 * k, 80 * j, 120)).save(folder / path)
                session.add(Stimulus(study_id=study.id, image_ref=row.id, model=MODEL, method=method,
                                     target_class=281, path=path, meta={}))
        people = {}
        for person in participants.itertuples():
            row = Participant(study_id=study.id, external_id=person.external_id, seed=person.seed,
                              slot=person.participant_id, consented=True, consent_at=person.consent_at,
                              started_at=person.started_at,
                              completed_at=None if pd.isna(person.completed_at) else person.completed_at,
                              completion_code=person.completion_code, user_agent=person.user_agent)
            session.add(row)
            session.flush()
            people[person.participant_id] = row.id
            if not pd.isna(person.completed_at):
                session.add(QuestionnaireAnswer(participant_id=row.id, key="age", value="30-49"))
        for r in responses.itertuples():
            canonical = sorted([r.method, r.method_b]) if r.task == "compare" else [r.method, r.method_b]
            order = [canonical.index(r.method), canonical.index(r.method_b)] if r.task == "compare" else [0]
            common = dict(task=r.task, image_id=r.image_id, model=MODEL, model_b=None,
                          method=canonical[0], method_b=canonical[1], target_class=281)
            trial = Trial(study_id=study.id, role="main", task_position=0, cell_index=None, spec={}, **common)
            session.add(trial)
            session.flush()
            plan = PlanRow(participant_id=people[r.participant_id], trial_index=r.trial_index,
                           trial_id=trial.id, is_practice=r.is_practice,
                           is_attention_check=r.is_attention_check,
                           display={"order": order, "options": [0, 1, 2]}, shown_at=r.shown_at, **common)
            session.add(plan)
            session.flush()
            session.add(Response(participant_id=people[r.participant_id], trial_index=r.trial_index,
                                 plan_row_id=plan.id, response=r.response,
                                 correct=None if pd.isna(r.correct) else bool(r.correct),
                                 confidence=None, rating=None if pd.isna(r.rating) else int(r.rating),
                                 rt_ms=int(r.rt_ms), answered_at=r.answered_at))

    database.write(fill)
    return folder
