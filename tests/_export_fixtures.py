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
            side = "same" if chosen == "same" else ("left" if chosen == left else "right")
            add("compare", image, left, right, response=side)
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
