"""Study configs: the example is valid, and every kind of mistake is named with its key and line."""
from __future__ import annotations

import pytest

from study.protocol.config import KNOWN_METHODS, ConfigError, load_config, parse_config
from study.protocol.tasks import TASKS
from study.resources import data_path

GOOD = """\
name = "t"
images = "bundled"
methods = ["gradcam", "cam"]

[text]
consent_md = \"\"\"
multi-line
consent
\"\"\"
instructions_md = "i"
debrief_md = "d"

[[tasks]]
type = "rating"

[[tasks]]
type = "compare"
"""


def fails(text: str, match: str, root=None):
    with pytest.raises(ConfigError, match=match):
        parse_config(text, root=root or ".", filename="study.toml")


def test_the_example_config_is_valid_and_with_the_demos_abn_uses_every_task_type():
    from study.demo import demo_config
    config = load_config(data_path("sample_study.toml"))
    # The examples and utility tasks need a model trained on a known set: the demo trains one and adds them.
    assert {t.type for t in config.tasks} == set(TASKS) - {"examples", "utility"}
    demo = parse_config(demo_config())
    assert {t.type for t in demo.tasks} == set(TASKS)
    assert demo.models == (*config.models, "abn") and demo.weights == {"abn": "abn.pt"}
    assert [(t.type, t.images) for t in demo.tasks if t.model == "abn"] == [
        ("examples", "shortcut:test"), ("rating", "shortcut:test"), ("utility", "shortcut:test")]
    utility = load_config(data_path("utility_study.toml"))    # the shipped utility study is valid too
    assert [t.type for t in utility.tasks] == ["utility"] and utility.tasks[0].methods[-1] == "none"
    assert config.allow_anonymous and config.questionnaire and config.text.consent_md.strip()
    assert config.redirect_url.format(code="X", pid="P").endswith("cc=X")


def test_known_methods_match_the_explainer_registry():
    from study.explainers import METHODS
    assert set(METHODS) == KNOWN_METHODS


def test_defaults_and_derived_values():
    config = parse_config(GOOD)
    assert config.models == ("efficientnet_lite0",)
    assert config.tasks[1].options.pairs == (("gradcam", "cam"),)
    assert config.tasks[0].methods == ("gradcam", "cam") and config.tasks[0].model == "efficientnet_lite0"
    assert config.practice_trials == 2 and config.exclusion.min_rt_ms == 300
    assert config.text.consent_md == "multi-line\nconsent\n"


def test_the_hash_ignores_comments_but_not_values():
    base = parse_config(GOOD).hash
    assert parse_config("# a comment\n" + GOOD).hash == base
    assert parse_config(GOOD.replace('"t"', '"u"')).hash != base


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace('type = "compare"', 'type = "compare"\nmetods = ["cam"]'),
     r"line 18: tasks\[1\]\.metods: unknown key"),
    (lambda t: t + "colour = 'red'\n", r"line 18: tasks\[1\]\.colour: unknown key"),
    (lambda t: "seeds = 3\n" + t, r"line 1: seeds: unknown key"),
    (lambda t: t.replace('name = "t"', 'name = 5'), r"line 1: name: must be str, got int"),
    (lambda t: t.replace('name = "t"', 'name = "t"\nseed = "x"'), r"line 2: seed: must be int"),
    (lambda t: t.replace('name = "t"', 'name = "t"\npractice_trials = true'), r"practice_trials: must be int, got bool"),
    (lambda t: t.replace('["gradcam", "cam"]', '["gradcam", "deeplift"]'), r"line 3: methods: unknown name 'deeplift'"),
    (lambda t: t.replace('type = "rating"', 'type = "ranking"'), r"line 14: tasks\[0\]\.type: unknown task type 'ranking'"),
    (lambda t: t.replace('images = "bundled"', 'images = "../elsewhere"'), r"line 2: images: path '../elsewhere' leaves the study folder"),
    (lambda t: t.replace('images = "bundled"', 'images = "voc:/etc:ann"'), r"images: path '/etc' leaves the study folder"),
    (lambda t: t.replace('name = "t"', 'name = "t"\ndatabase_url = "sqlite:///../x.db"'), r"database_url: a SQLite database must be a file inside"),
    (lambda t: t.replace('name = "t"', 'name = "t"\ndatabase_url = "sqlite://"'), r"line 2: database_url: .*in-memory"),
    (lambda t: t.replace('name = "t"', 'name = "t"\ndatabase_url = "study.db"'), r"database_url: must be an SQLAlchemy URL"),
    (lambda t: t.replace('name = "t"', 'name = "t"\nredirect_url = "https://x/?c={code}&u={user}"'), r"redirect_url: only \{code\} and \{pid\}"),
    (lambda t: t.replace('instructions_md = "i"\n', ''), r"text: missing required key 'instructions_md'"),
    (lambda t: t.replace('[[tasks]]\ntype = "compare"\n', '[[tasks]]\ntype = "compare"\nmethods = ["cam"]\n'), r"compare needs at least two methods"),
    (lambda t: t.replace('type = "compare"', 'type = "trust"\nmodels = ["efficientnet_lite0"]'), r"trust compares exactly two models"),
    (lambda t: t.replace('type = "compare"', 'type = "distinction"\nconfidence_points = 7'), r"confidence_points: must be 4 or 5"),
    (lambda t: t + "[[questionnaire]]\nkey = 'a b'\nlabel = 'x'\n", r"questionnaire\[0\]\.key: must be a unique identifier"),
])
def test_bad_configs_name_the_key_and_line(edit, match):
    fails(edit(GOOD), match)


def test_a_task_may_use_any_known_method():
    config = parse_config(GOOD.replace('type = "rating"', 'type = "rating"\nmethods = ["guided_gradcam"]'))
    assert config.tasks[0].methods == ("guided_gradcam",)


def test_not_toml_and_missing_files_are_clear(tmp_path):
    fails("name = ", r"study.toml: not valid TOML")
    with pytest.raises(FileNotFoundError, match="study config not found"):
        load_config(tmp_path / "missing.toml")


def test_paths_resolve_inside_the_config_folder(tmp_path):
    config = parse_config(GOOD.replace('images = "bundled"', 'images = "photos/set1"'), root=tmp_path)
    assert config.resolve("photos/set1") == (tmp_path / "photos" / "set1").resolve()
    with pytest.raises(ValueError, match="leaves the study folder"):
        config.resolve("photos/../../x")
    assert config.database(tmp_path) == f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    url = "postgresql+psycopg://u@h/db"
    assert parse_config(GOOD.replace('name = "t"', f'name = "t"\ndatabase_url = "{url}"')).database(tmp_path) == url
