"""Simulated participants with a known accuracy per method, answering through the session API.

They exist to test the survey end to end (concurrency, quotas, recovered accuracies) and to
give the demo data. Their external ids start with `SIM-` so no one mistakes them for people.
A simulated participant acts only through the participant API a person's browser uses (enter,
consent, next trial, answer, complete); it looks up the right answer of each scored trial in the
built study and gives it with probability

    P(right) = expit(logit(accuracy[method]) + ability - difficulty[image]),
    ability ~ N(0, participant_sd²) per participant, difficulty ~ N(0, image_sd²) per image,

the model of the analysis's mixed logit (both SDs 0: exactly the method's accuracy). In a utility task the
method is the participant's condition (`none` the control) and people learn as the rounds go by: round r
adds `gain_per_round * (r - 1)` on the logit scale (the model of its mixed logit, correct ~ condition +
round). Trials to study only (a learning phase) are passed with an empty answer. Unscored trials (rating,
compare, trust) get a random option. Attention checks are always passed. Each
participant's choices, ability and each image's difficulty are seeded, so a run with one thread
is reproducible; with several, the order in which they arrive decides their Latin-square slots
and so their plans.
"""
from __future__ import annotations

import math
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

from study.store.identity import SIM_PREFIX
from study.survey.session import ParticipantState, SurveySession, TrialView


class SimulatedClock:
    """A clock that moves only by the simulated response times, so a rerun writes the same timestamps."""

    def __init__(self, start: datetime):
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return self._now

    def advance(self, ms: int) -> None:
        with self._lock:
            self._now += timedelta(milliseconds=ms)


def simulate_participants(study_dir: str | Path, n: int, accuracy: dict[str, float], seed: int = 0,
                          threads: int = 1, start: datetime | None = None, *, participant_sd: float = 0.0,
                          image_sd: float = 0.0, gain_per_round: float = 0.0) -> list[ParticipantState]:
    """Run `n` simulated participants to completion; returns their final states.

    With `start` (and one thread) the session runs on a `SimulatedClock` from that moment, and the
    stored timestamps, like everything else, depend only on the seed. `participant_sd` and
    `image_sd` are the SDs of ability and image difficulty on the logit scale.
    """
    if n < 0 or threads < 1:
        raise ValueError(f"n must be >= 0 and threads >= 1, got n={n}, threads={threads}")
    if participant_sd < 0 or image_sd < 0:
        raise ValueError(f"participant_sd and image_sd must be >= 0, got {participant_sd} and {image_sd}")
    for method, p in accuracy.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"accuracy of {method!r} must be in [0, 1], got {p}")
    clock = SimulatedClock(start) if start is not None else None
    session = SurveySession(study_dir, clock=clock) if clock else SurveySession(study_dir)
    difficulty = ImageDifficulty(seed, image_sd)

    def one(i: int) -> ParticipantState:
        ability = random.Random(f"{seed}|{i}|ability").gauss(0.0, participant_sd) if participant_sd else 0.0
        return run_participant(session, f"{SIM_PREFIX}{seed}-{i:04d}", accuracy, random.Random(f"{seed}|{i}"),
                               clock, ability=ability, difficulty=difficulty, gain_per_round=gain_per_round)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, range(n)))


class ImageDifficulty:
    """Each image's difficulty on the logit scale, drawn from N(0, sd²) seeded by (seed, image id)."""

    def __init__(self, seed: int, sd: float):
        self.seed, self.sd = seed, sd

    def __call__(self, image_id: str) -> float:
        return random.Random(f"{self.seed}|image|{image_id}").gauss(0.0, self.sd) if self.sd else 0.0


def run_participant(session: SurveySession, external_id: str, accuracy: dict[str, float],
                    rng: random.Random, clock: SimulatedClock | None = None, *, ability: float = 0.0,
                    difficulty: ImageDifficulty = ImageDifficulty(0, 0.0), gain_per_round: float = 0.0) -> ParticipantState:
    """One simulated participant, from entering the link to the completion code; `ability` and
    `difficulty(image_id)` shift every method's accuracy on the logit scale, and so does learning in
    a utility task's later rounds."""
    state = session.consent(external_id, True, user_agent="camstudy-simulator")
    while (trial := session.next_trial(state.participant_id)) is not None:
        learned = gain_per_round * ((trial.round or 1) - 1)
        response = choose(session, trial, accuracy, rng, ability + learned, difficulty)
        confidence = rng.choice(trial.confidence_options)[0] if trial.confidence_options else None
        rt_ms = int(rng.lognormvariate(7.3, 0.4))
        if clock is not None:
            clock.advance(rt_ms)
        session.answer(state.participant_id, trial.trial_index, response, rt_ms, confidence)
    answers = {q.key: rng.choice(q.options) if q.options else "(simulated)" for q in session.config.questionnaire}
    session.complete(state.participant_id, answers)
    return session.state(state.participant_id)


def choose(session: SurveySession, trial: TrialView, accuracy: dict[str, float], rng: random.Random,
           ability: float = 0.0, difficulty: ImageDifficulty = ImageDifficulty(0, 0.0)) -> str:
    """The right answer with the method's probability (shifted by ability and the image's
    difficulty on the logit scale), otherwise a random wrong option."""
    template = session.built.trial(trial.trial_id)
    method, right = template.method, template.spec.answer
    values = [value for value, _ in trial.options]
    if not values:                     # a screen to study: nothing to choose
        return ""
    if right is None:
        return rng.choice(values)
    if method not in accuracy and not trial.is_attention_check:
        raise LookupError(f"no simulated accuracy for method {method!r}")
    p = 1.0 if trial.is_attention_check else shifted(accuracy[method], ability - difficulty(template.image_id))
    wrong = [v for v in values if v != right]
    return right if rng.random() < p or not wrong else rng.choice(wrong)



def shifted(p: float, shift: float) -> float:
    """expit(logit(p) + shift); accuracies of exactly 0 or 1 stay where they are."""
    if shift == 0 or p in (0.0, 1.0):
        return p
    return 1.0 / (1.0 + math.exp(-(math.log(p / (1 - p)) + shift)))
