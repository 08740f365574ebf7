"""The utility task (Colin, Fel et al. 2022): its config, its plans, and a participant going through it.

Torch-free: fake images of two classes, and the fake renderer's decisions (the images listed as wrong are
decided as the other class), so the known facts of every image are set by the test."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from _study_fixtures import FakeRenderer, write_config
from study.images import ImageItem, composite
from study.protocol.config import ConfigError, load_config
from study.protocol.tasks.utility import UtilityOptions, utility_sequence
from study.results.export import export_tables
from study.stimuli.build import build_study
from study.store.database import PlanRow, Trial, open_study
from study.survey.monitor import StudyMonitor
from study.survey.session import SurveySession

N_IMAGES = 60


def utility_items(n: int = N_IMAGES) -> list[ImageItem]:
    """Images u00.. of classes 0 and 1, alternating."""
    return [ImageItem(f"u{i:02d}", Image.new("RGB", (16, 16), (4 * i, 80, 0)), labels=(i % 2,)) for i in range(n)]


WRONG = tuple(f"u{i:02d}" for i in range(30))   # the model errs on the first half, of both classes

TASK = """
[[tasks]]
type = "utility"
methods = ["gradcam", "cam"]
classes = [0, 1]
rounds = 2
learn = 4
test = 6
{extra}
[[tasks.questions]]
key = "relies"
label = "What does the model rely on?"
options = ["the shape", "a mark"]
answer = "a mark"
"""


def build(tmp_path: Path, extra: str = "", items=None, wrong=WRONG) -> Path:
    config = write_config(tmp_path / "config", TASK.format(extra=extra), practice=0, attention=0)
    build_study(config, tmp_path / "study", progress=False, renderer=FakeRenderer(wrong),
                items=items or utility_items(), combine=composite)
    return tmp_path / "study"


def plans_of(study: Path) -> dict[int, list[PlanRow]]:
    folder = open_study(study)
    with folder.database.read() as s:
        rows = s.scalars(select(PlanRow).order_by(PlanRow.participant_id, PlanRow.trial_index)).all()
    by_person: dict[int, list[PlanRow]] = {}
    for row in rows:
        by_person.setdefault(row.participant_id, []).append(row)
    return by_person


def test_config_adds_the_control_and_is_between_subjects_only(tmp_path):
    task = load_config(write_config(tmp_path, TASK.format(extra=""), practice=0, attention=0)).tasks[0]
    assert task.methods == ("gradcam", "cam", "none") and task.design == "between"
    assert task.options.questions[0].answer == "a mark" and task.options.rounds == 2


@pytest.mark.parametrize("extra, message", [
    ('design = "within"', r"tasks\[0\]\.design: a utility task is between subjects by nature: .*unseen"),
    ("trials = 4", r"tasks\[0\]\.trials: .*set rounds, learn and test instead"),
    ("model_errors = 1.5", r"tasks\[0\]\.model_errors: must be a share between 0 and 1"),
])
def test_config_errors_name_the_key(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, TASK.format(extra=extra), practice=0, attention=0))


def test_questions_must_name_an_answer_among_their_options(tmp_path):
    text = TASK.format(extra="").replace('answer = "a mark"', 'answer = "colour"')
    with pytest.raises(ConfigError, match=r"questions\[0\]\.answer: must be one of the options"):
        load_config(write_config(tmp_path, text, practice=0, attention=0))


def test_classes_are_two_to_four(tmp_path):
    text = TASK.format(extra="").replace("classes = [0, 1]", "classes = [0]")
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.classes: must be 2-4 different class"):
        load_config(write_config(tmp_path, text, practice=0, attention=0))


def test_plans_are_between_disjoint_with_their_model_errors_and_alike_across_conditions(tmp_path):
    study = build(tmp_path)
    session = SurveySession(study)
    people = [session.consent(f"p{i}", True) for i in range(9)]      # three ranks of three conditions
    plans = plans_of(study)
    by_rank_condition = {}
    for person in people:
        rows = plans[person.participant_id]
        images = [r for r in rows if r.display["phase"] != "question"]
        assert {r.method for r in rows} == {person.condition}                 # between subjects only
        assert len(images) == 2 * (4 + 6) and [r.display["phase"] for r in rows[-1:]] == ["question"]
        assert len({r.image_id for r in images}) == len(images)              # learning and test disjoint
        for rnd in (1, 2):
            for phase, size in (("learn", 4), ("test", 6)):
                rows_in = [r for r in images if r.display == {**r.display, "round": rnd, "phase": phase}]
                assert len(rows_in) == size
                assert sum(not r.display["model_correct"] for r in rows_in) == size // 2   # model_errors = 0.5
                assert Counter(r.target_class for r in rows_in) == {0: size // 2, 1: size // 2}  # balanced decisions
        # the phases come in order: learn 1, test 1, learn 2, test 2
        assert [(r.display["round"], r.display["phase"]) for r in images] == sorted(
            [(r.display["round"], r.display["phase"]) for r in images], key=lambda k: (k[0], k[1] != "learn"))
        rank = [p.participant_id for p in people if p.condition == person.condition].index(person.participant_id)
        by_rank_condition[rank, person.condition] = [(r.image_id, r.display["phase"]) for r in images]
    for rank in range(3):
        sequences = {tuple(seq) for (r, _), seq in by_rank_condition.items() if r == rank}
        assert len(sequences) == 1                                            # same images, same order
    assert len({tuple(seq) for seq in by_rank_condition.values()}) == 3       # ranks differ


def test_learning_shows_the_decision_and_the_map_testing_only_the_image(tmp_path):
    session = SurveySession(build(tmp_path))
    seen = {}
    for pid in ("a", "b", "c"):
        person = session.consent(pid, True)
        shown = []
        while (trial := session.next_trial(person.participant_id)) is not None:
            answer = trial.options[0][0] if trial.options else ""
            outcome = session.answer(person.participant_id, trial.trial_index, answer, rt_ms=800)
            shown.append((len(trial.images), len(trial.options), outcome.correct, trial.feedback_md))
        seen[person.condition] = shown
    learn_none, learn_map = seen["none"][0], seen["gradcam"][0]
    assert learn_none[:3] == (1, 0, None) and learn_map[:3] == (2, 0, None)     # photo, + map unless control
    tests = [s for s in seen["none"][4:10]]
    assert all(images == 1 and options == 2 and correct is not None and feedback is None
               for images, options, correct, feedback in tests)                 # no map, no feedback
    assert seen["cam"][-1][:2] == (0, 2)                                         # the question comes last


def test_learn_guess_asks_first_then_reveals_in_a_trial_a_reload_cannot_skip(tmp_path):
    study = build(tmp_path, extra="learn_guess = true")
    session = SurveySession(study)
    person = next(p for p in (session.consent(f"g{i}", True) for i in range(3)) if p.condition == "gradcam")
    guess = session.next_trial(person.participant_id)
    assert len(guess.images) == 1 and len(guess.options) == 2 and guess.feedback_md is None and guess.round == 1
    session.answer(person.participant_id, guess.trial_index, guess.options[1][0], rt_ms=700)
    assert session.built.plan_length == 2 * (2 * 4 + 6) + 1                 # rounds x (guess + learn + test) + question
    reveal = SurveySession(study).next_trial(person.participant_id)      # a new server process: still there
    assert reveal.trial_index == guess.trial_index + 1 and "chose" in reveal.prompt_md
    assert len(reveal.images) == 2 and not reveal.options and reveal.round == 1   # the photo and the map
    session.answer(person.participant_id, reveal.trial_index, "", rt_ms=4000)
    rows = export_tables(study, n_resamples=10)["responses"]
    guess_row, reveal_row = rows[rows.participant_id == person.participant_id].sort_values("trial_index").itertuples()
    assert (guess_row.phase, reveal_row.phase) == ("guess", "learn") and guess_row.image_id == reveal_row.image_id
    assert (guess_row.response, reveal_row.response) == (guess.options[1][0], "")    # studied: nothing chosen
    assert guess_row.model_decision == reveal_row.model_decision


def test_the_instructions_show_no_map_to_the_control_and_none_of_a_utility_image_to_anyone(tmp_path):
    """The control must learn without maps, and an example map of a task image would be one more learning
    trial for the method groups only: a utility-only study has no example."""
    session = SurveySession(build(tmp_path))
    monitor = StudyMonitor(session.built, session.db)
    assert [monitor.instructions_map(condition) for condition in ("none", "gradcam", "cam", None)] == [None] * 4


def test_two_utility_tasks_show_a_participant_different_sequences(tmp_path):
    config = write_config(tmp_path / "config", TASK.format(extra="") * 2, practice=0, attention=0)
    build_study(config, tmp_path / "study", progress=False, renderer=FakeRenderer(WRONG), items=utility_items(),
                combine=composite)
    SurveySession(tmp_path / "study").consent("p0", True)
    folder = open_study(tmp_path / "study")
    with folder.database.read() as s:
        rows = s.execute(select(Trial.task_position, Trial.image_id).join(PlanRow, PlanRow.trial_id == Trial.id)
                         .where(PlanRow.display["phase"].as_string() == "test").order_by(PlanRow.trial_index)).all()
    first, second = ([image for position, image in rows if position == task] for task in (0, 1))
    assert len(first) == len(second) == 12 and first != second


def test_too_few_images_or_errors_is_a_build_error_with_the_counts(tmp_path):
    with pytest.raises(ValueError, match=r"need 20 images .* 10 of them model errors .* gives 60 \(4 model errors\)"):
        build(tmp_path / "a", wrong=WRONG[:4])
    with pytest.raises(ValueError, match=r"need 20 images .*; the image set gives 12"):
        build(tmp_path / "b", items=utility_items(12))


@pytest.mark.parametrize("seed", range(5))
def test_a_sequence_keeps_its_quotas_on_any_draw(seed):
    rng = random.Random(seed)
    images = [(rng.randrange(3), rng.random() < 0.4) for _ in range(80)]
    options = UtilityOptions(classes=(0, 1, 2), rounds=3, learn=5, test=7, model_errors=0.5)
    sequence = utility_sequence(images, options, random.Random(seed))
    assert len({image for _, _, image in sequence}) == len(sequence) == 36
    for rnd in (1, 2, 3):
        for phase, size in (("learn", 5), ("test", 7)):
            chosen = [image for r, p, image in sequence if (r, p) == (rnd, phase)]
            assert len(chosen) == size and sum(not images[i][1] for i in chosen) == round(size * 0.5 + 1e-9)


def test_admin_progress_counts_a_utility_task_per_condition_against_whole_sequences(tmp_path):
    session = SurveySession(build(tmp_path))
    person = next(p for p in (session.consent(f"a{i}", True) for i in range(3)) if p.condition == "cam")
    for _ in range(5):
        trial = session.next_trial(person.participant_id)
        session.answer(person.participant_id, trial.trial_index, trial.options[0][0] if trial.options else "", 900)
    progress = StudyMonitor(session.built, session.db).cell_progress().set_index("method")
    per_participant = 2 * (4 + 6) + 1
    assert set(progress.index) == {"gradcam", "cam", "none"} and (progress["image_id"] == "").all()
    assert progress.loc["cam", "n_answers"] == 5 and progress.loc["none", "n_answers"] == 0
    assert (progress["target"] == session.built.config.answers_per_cell * per_participant).all()
