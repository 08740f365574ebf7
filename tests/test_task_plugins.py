"""A task type is one module and one registration line: docs/ARCHITECTURE.md's "Adding a task type",
done here with a throwaway type whose options the config module has never heard of."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import select

from _study_fixtures import FakeRenderer, fake_items, write_config
from study.images import composite
from study.protocol.config import ConfigError, load_config
from study.protocol.tasks import TASKS, TaskType, TrialSpec, register
from study.stimuli.build import build_study
from study.store.database import Trial, open_study
from study.survey.session import SurveySession


@dataclass(frozen=True)
class OddOneOutOptions:
    rounds: int = 2                       # a key no other task has
    prompt: str = "Is this map odd?"


class OddOneOut(TaskType):
    """The throwaway type: yes/no on one map, with its own two options."""
    name = "odd_one_out"
    options_type = OddOneOutOptions
    codebook = "yes/no"

    def parse_options(self, check, raw, path, methods, models):
        return OddOneOutOptions(check.count(raw, path, "rounds", 2, low=1),
                                check.typed(raw, path, "prompt", str, "Is this map odd?"))

    def spec(self, task, unit, cond, names, say=None):
        return TrialSpec(f"{task.options.prompt} ({task.options.rounds} rounds)", (("yes", "Yes"), ("no", "No")))


@pytest.fixture
def odd_one_out():
    register(OddOneOut())
    try:
        yield
    finally:
        TASKS.pop("odd_one_out")


TASK = '\n[[tasks]]\ntype = "odd_one_out"\nrounds = 3\nprompt = "Odd?"\ntrials = 2\n'


def test_a_registered_task_type_reads_its_own_options_and_builds(tmp_path, odd_one_out):
    config_path = write_config(tmp_path / "config", TASK, practice=1, attention=0)
    task = load_config(config_path).tasks[0]
    assert task.options == OddOneOutOptions(rounds=3, prompt="Odd?") and task.model == "m1"
    out = tmp_path / "study"
    build_study(config_path, out, progress=False, renderer=FakeRenderer(), items=fake_items(4), combine=composite)
    folder = open_study(out)
    with folder.database.read() as s:
        assert {t.task for t in s.scalars(select(Trial))} == {"odd_one_out"}
    session = SurveySession(out)
    person = session.consent("p1", True)
    trial = session.next_trial(person.participant_id)
    assert trial.prompt_md == "Odd? (3 rounds)" and [v for v, _ in trial.options] == ["yes", "no"]


def test_its_keys_are_checked_like_every_task_key(tmp_path, odd_one_out):
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.rounds: must be >= 1"):
        load_config(write_config(tmp_path / "a", TASK.replace("rounds = 3", "rounds = 0"), attention=0))
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.round: unknown key \(allowed: .*prompt, rounds"):
        load_config(write_config(tmp_path / "b", TASK.replace("rounds = 3", "round = 3"), attention=0))


def test_without_registration_the_type_is_unknown(tmp_path):
    with pytest.raises(ConfigError, match="unknown task type 'odd_one_out'"):
        load_config(write_config(tmp_path, TASK, attention=0))
