"""Languages: the message catalogue, the config's texts per language, class names per language,
a build that words every trial in each language, and sessions that show a participant theirs."""
from __future__ import annotations

import string

import pandas as pd
import pytest
from sqlalchemy import select

from _study_fixtures import FakeRenderer, build_fake_study, fake_items, write_config
from study.stimuli.build import build_study
from study.images import composite
from study.protocol.config import ConfigError, parse_config
from study.protocol.languages import read_class_names
from study.protocol.messages import LANGUAGES, MESSAGES, choose_language, message, speaker
from study.survey.monitor import StudyMonitor
from study.survey.session import SurveySession
from study.store.database import Participant, Trial, open_study

GERMAN = '''
[text.de]
consent_md = "Einwilligung"
instructions_md = "Anleitung"
debrief_md = "Aufklärung"
'''


# --- the catalogue --------------------------------------------------------------------------

def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def test_every_language_has_every_key_with_the_same_fields():
    english = MESSAGES["en"]
    assert {"en", "de"} <= set(LANGUAGES)
    for language, catalogue in MESSAGES.items():
        assert catalogue.keys() == english.keys(), (language, catalogue.keys() ^ english.keys())
        for key, template in catalogue.items():
            assert template.strip(), (language, key)
            assert _fields(template) == _fields(english[key]), (language, key)


def test_messages_are_filled_in_and_a_missing_one_is_named():
    assert message("de", "trial.progress", n=2, total=9) == "Frage 2 von 9"
    assert speaker("en")("task.rating.prompt", name="cat") == "How well does this map highlight the **cat**?"
    with pytest.raises(KeyError, match="'nope' in language 'de'"):
        message("de", "nope")
    with pytest.raises(KeyError, match="no messages in 'xx'"):
        speaker("xx")


@pytest.mark.parametrize("requested, header, expected", [
    ("de", "en-US,en;q=0.9", "de"),              # ?lang= wins
    (None, "de-AT,de;q=0.9,en;q=0.8", "de"),     # the browser's first language the study has
    (None, "fr-FR,fr;q=0.9,de;q=0.5", "de"),
    (None, "en;q=0.3,de;q=0.8", "de"),           # by quality, not order
    (None, "fr-FR", "en"),                       # none the study has: the default
    ("xx", "de", "de"),                          # an unknown ?lang= falls through
    (None, "", "en"),
    ("DE", None, "de"),
    (None, "de;q=0", "en"),
])
def test_the_language_shown_is_the_link_s_then_the_browser_s_then_the_default(requested, header, expected):
    assert choose_language(("en", "de"), "en", requested, header) == expected


# --- the config -----------------------------------------------------------------------------

def config_text(tmp_path, extra: str = "", german: str = GERMAN, **options) -> str:
    text = write_config(tmp_path / "config", extra=extra, **options).read_text()
    text = text.replace('label = "Age group"\n', 'label = "Age group"\nlabel_de = "Altersgruppe"\n'
                        'options_de = ["18-29 Jahre", "30+ Jahre"]\n')
    text = text.replace('label = "Comments"\n', 'label = "Comments"\nlabel_de = "Anmerkungen"\n')
    return text + german


def test_a_config_with_german_texts_has_two_languages(tmp_path):
    config = parse_config(config_text(tmp_path), root=tmp_path)
    assert config.language == "en" and config.languages == ("en", "de")
    assert config.text.consent_md == "consent" and config.text_in("de").debrief_md == "Aufklärung"
    age = config.questionnaire[0]
    assert age.label_in("de") == "Altersgruppe" and age.label_in("en") == "Age group"
    assert age.options_in("de") == [("18-29", "18-29 Jahre"), ("30+", "30+ Jahre")]
    assert age.options_in("en") == [("18-29", "18-29"), ("30+", "30+")]


def test_an_old_config_has_english_only(tmp_path):
    config = parse_config(write_config(tmp_path).read_text(), root=tmp_path)
    assert config.languages == ("en",) and config.class_names == {}


@pytest.mark.parametrize("change, match", [
    (lambda t: t.replace('debrief_md = "Aufklärung"\n', ''), r"line \d+: text\.de: missing required key 'debrief_md'"),
    (lambda t: t.replace('label_de = "Anmerkungen"\n', ''),
     r"line \d+: questionnaire\[1\]: missing required key 'label_de': the study has language 'de'"),
    (lambda t: t.replace('options_de = ["18-29 Jahre", "30+ Jahre"]\n', ''),
     r"questionnaire\[0\]: missing required key 'options_de'"),
    (lambda t: t.replace('["18-29 Jahre", "30+ Jahre"]', '["18-29 Jahre"]'),
     r"questionnaire\[0\]\.options_de: must translate each of the 2 options"),
    (lambda t: t.replace("[text.de]", "[text.fr]"), r"text\.fr: language 'fr' is not one the survey"),
    (lambda t: t.replace('label_de = "Anmerkungen"\n', 'label_de = "Anmerkungen"\nlabel_fr = "x"\n'),
     r"questionnaire\[1\]\.label_fr: unknown key"),
    (lambda t: "language = \"de\"\n" + t, r"text\.de: 'de' is the default language"),
    (lambda t: 'class_names = { de = "../names.csv" }\n' + t, r"line 1: class_names\.de: path '../names.csv' leaves"),
    (lambda t: 'class_names = { fr = "fr.csv" }\n' + t, r"class_names\.fr: unknown key"),
])
def test_an_incomplete_language_is_named_with_its_key(tmp_path, change, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(change(config_text(tmp_path)), root=tmp_path, filename="study.toml")


def test_a_german_default_needs_no_english(tmp_path):
    text = write_config(tmp_path / "config").read_text()
    config = parse_config('language = "de"\n' + text, root=tmp_path)
    assert config.languages == ("de",) and config.text_in("de").consent_md == "consent"


def test_class_name_csvs_may_have_a_header_and_name_bad_rows(tmp_path):
    good = tmp_path / "de.csv"
    good.write_text("index,name\n0,Klasse null\n\n3,\"Katze, getigert\"\n", encoding="utf-8")
    assert read_class_names(good) == {0: "Klasse null", 3: "Katze, getigert"}
    bad = tmp_path / "bad.csv"
    bad.write_text("0,a\nx,b\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 2: class index must be a whole number"):
        read_class_names(bad)
    bad.write_text("0,a\n0,b\n")
    with pytest.raises(ValueError, match="line 2: class 0 needs one non-empty name"):
        read_class_names(bad)


# --- a build in two languages and its sessions ------------------------------------------------

@pytest.fixture(scope="module")
def bilingual(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bilingual")
    folder = tmp / "config"
    text = config_text(tmp, extra='class_names = { de = "names_de.csv" }')
    (folder / "config.toml").write_text(text)
    (folder / "names_de.csv").write_text("".join(f"{i},Klasse {i}\n" for i in range(0, 20, 2)), encoding="utf-8")
    out = tmp / "study"
    build_study(folder / "config.toml", out, progress=False, renderer=FakeRenderer(("img7",)),
                items=fake_items(8), combine=composite)
    return out


def test_the_build_words_every_trial_in_each_language_with_its_class_names(bilingual):
    folder = open_study(bilingual)
    with folder.database.read() as s:
        rows = s.scalars(select(Trial).where(Trial.study_id == folder.study_id)).all()
        specs = [(t.task, t.role, t.spec) for t in rows]
    for task, role, spec in specs:
        german = spec["translations"]["de"]
        assert set(spec["translations"]) == {"de"}
        # the same trial: values, answer, order and stimuli; only the wording differs
        assert [v for v, _ in german["options"]] == [v for v, _ in spec["options"]]
        assert (german["answer"], german["stimuli"], german["scale"]) == (spec["answer"], spec["stimuli"], spec["scale"])
        assert german["prompt_md"] != spec["prompt_md"]
    rating = next(spec for task, role, spec in specs if task == "rating" and role == "main")
    assert rating["prompt_md"].startswith("How well does this map highlight the **class ")
    assert rating["translations"]["de"]["prompt_md"].startswith("Wie gut hebt diese Karte **Klasse ")
    distinction = next(spec for task, _, spec in specs if task == "distinction")
    shown = [label for _, label in distinction["translations"]["de"]["options"]]
    assert any(label.startswith("Klasse ") for label in shown)       # the CSV's names ...
    assert any(label.startswith("class ") for label in shown)        # ... and the model's where it has none
    checks = [spec for _, role, spec in specs if role == "attention"]
    assert checks and all(c["translations"]["de"]["prompt_md"].startswith("Diese Frage prüft") for c in checks)


def test_the_study_folder_keeps_its_class_names_for_the_instructions_example(bilingual):
    """The survey reads only the study folder: the German example is named from the CSV kept there."""
    assert (bilingual / "names_de.csv").read_text(encoding="utf-8").startswith("0,Klasse 0")
    session = SurveySession(bilingual)
    monitor = StudyMonitor(session.built, session.db)
    (_, german), (_, english) = monitor.instructions_map(language="de"), monitor.instructions_map(language="en")
    assert german.startswith("Klasse ") and not english.startswith("Klasse ")


def test_a_one_language_build_stores_specs_as_before(tmp_path):
    folder = open_study(build_fake_study(tmp_path))
    with folder.database.read() as s:
        spec = s.scalars(select(Trial.spec).where(Trial.study_id == folder.study_id)).first()
    assert "translations" not in spec and spec["prompt_md"]


def _answer_everything(session, pid):
    while (trial := session.next_trial(pid)) is not None:
        confidence = trial.confidence_options[0][0] if trial.confidence_options else None
        session.answer(pid, trial.trial_index, trial.options[0][0], rt_ms=900, confidence=confidence)


def test_a_participant_sees_the_trials_in_their_consent_language(bilingual, tmp_path):
    session = SurveySession(bilingual)
    german = session.consent("de-1", True, language="de")
    english = session.consent("en-1", True, language="en")
    other = session.consent("fr-1", True, language="fr")      # not a language of the study: the default
    assert (german.language, english.language, other.language) == ("de", "en", "en")
    assert SurveySession(bilingual).state(german.participant_id).language == "de"
    first_de = session.next_trial(german.participant_id)
    first_en = session.next_trial(english.participant_id)
    assert first_de.is_practice and first_de.feedback_md
    assert "**" in first_de.prompt_md and first_de.prompt_md != first_en.prompt_md
    for pid in (german.participant_id, english.participant_id):
        _answer_everything(session, pid)
        session.complete(pid, {"age": "30+"})
    with session.db.read() as s:
        languages = dict(s.execute(select(Participant.external_id, Participant.language)).all())
    assert languages == {"de-1": "de", "en-1": "en", "fr-1": "en"}
    declined = session.consent("no-1", False, language="de")
    assert declined.language is None

    from study.results.export import export_tables
    people = export_tables(bilingual)["participants"].set_index("external_id")
    assert people.loc["de-1", "language"] == "de" and people.loc["en-1", "language"] == "en"
    assert pd.isna(people.loc["no-1", "language"])


def test_german_trials_are_scored_like_english_ones(bilingual):
    session = SurveySession(bilingual)
    pids = [session.consent(f"score-{lang}", True, language=lang).participant_id for lang in ("de", "en")]
    outcomes = []
    for pid in pids:
        trial = session.next_trial(pid)
        right = session.built.trial(trial.trial_id).spec.answer
        outcomes.append(session.answer(pid, trial.trial_index, right or trial.options[0][0], rt_ms=800).correct)
    assert outcomes[0] == outcomes[1]
