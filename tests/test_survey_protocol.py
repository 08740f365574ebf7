"""The protocol-level load generator (bench/survey_protocol.py), smoke-tested with a handful of participants:
it speaks the survey's websocket protocol, answers, fetches the stimuli, and the server stores each answer
once."""
from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from survey_protocol import load  # noqa: E402
from survey_targets import Target  # noqa: E402


def test_a_handful_of_protocol_participants_answer_and_nothing_is_lost_or_stored_twice(tmp_path):
    target = Target(BENCH.parent, 1, tmp_path).build().start()
    try:
        result = load(target, 3, think_s=0.2, ramp_s=0.5, window_s=5, prefix="SMOKE")
    finally:
        target.stop()
    assert result.answers >= 10 and result.lost == [] and result.duplicated == []
    assert 0 < result.p50 <= result.p95 < 5 and result.cpu_ms > 0
    stored = target.stored()
    assert set(stored) == {"SMOKE-0000", "SMOKE-0001", "SMOKE-0002"}
    assert all(have == list(range(len(have))) for have in stored.values())   # in plan order, each once
