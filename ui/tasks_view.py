"""One trial on screen: its prompt, then the trial component (`trial.js`: images, choices, confidence
and Next), which sends the answer, its corrections settled, with the response time the browser
measured, in one message. Task-specific wording comes from the session's `TrialView`; this module
only lays it out and reads the submission back."""
from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from study.survey.session import MAX_RT_MS
from ui.language import t

_HERE = Path(__file__).parent
# Read once per server process; Streamlit sends the code with the element and the browser runs it
# from a blob: URL, so nothing is fetched from anywhere but the study server.
_TRIAL = st.components.v2.component("camstudy_trial", js=(_HERE / "trial.js").read_text(encoding="utf-8"),
                                    css=(_HERE / "trial.css").read_text(encoding="utf-8"), isolate_styles=False)


@dataclass(frozen=True)
class Submission:
    trial_index: int
    response: str
    confidence: str | None
    rt_ms: int          # measured in the browser: stimuli on screen -> the submitting click or key


def _per_row(n_images: int) -> int:
    # One row keeps the choices in view under the maps on a laptop screen (two rows of HIVE's
    # four maps pushed them below the fold); the style sheet stacks them on a phone.
    return n_images if n_images <= 4 else 3


def _alt(index: int, caption: str, n: int) -> str:
    """Alt text of a stimulus: what it is, for screen readers."""
    where = t("trial.alt_of", index=index + 1, n=n) if n > 1 else t("trial.alt_one")
    return where + (f" ({caption})" if caption else "")


def _data(trial, url: Callable[[Path], str]) -> dict:
    """What trial.js draws: everything about the trial as plain JSON."""
    n = len(trial.images)
    captions = list(trial.captions) + [""] * (n - len(trial.captions))
    return {
        "trial": trial.trial_index, "per_row": _per_row(n),
        "images": [{"src": url(path), "alt": _alt(i, caption, n), "caption": caption}
                   for i, (path, caption) in enumerate(zip(trial.images, captions))],
        "options": [list(o) for o in trial.options], "confidence": [list(o) for o in trial.confidence_options],
        "text": {"answer": t("trial.your_answer"), "confidence": t("trial.how_confident"), "next": t("trial.next"),
                 "choose": t("trial.choose"), "choose_with_confidence": t("trial.choose_with_confidence"),
                 "hint": t(_keyboard_hint(trial)), "resend": t("trial.resend")},
    }


def _keyboard_hint(trial) -> str:
    """The hint names only the keys this trial answers to (a screen to study has no answer to choose)."""
    if not trial.options:
        return "trial.keyboard_hint_next"
    return "trial.keyboard_hint" if trial.confidence_options else "trial.keyboard_hint_answer"


def _ignore() -> None:
    """The component reports a submission only to a callback; where the caller reads the result, none."""


def show_trial(trial, url: Callable[[Path], str], *, key: str,
               on_submit: Callable[[], None] | None = None) -> Submission | None:
    """Draw the trial; the submission made in this run's click, if any (else None). `on_submit` runs
    before the next run of the script (read the answer there with `submission(key)`), so that the
    run that follows an answer can already draw what comes next."""
    st.markdown(trial.prompt_md)  # the question first: on a phone the maps fill the screen
    result = _TRIAL(key=key, data=_data(trial, url), on_submit_change=on_submit or _ignore)
    return _read(result.submit)


def submission(key: str) -> Submission | None:
    """The submission the component under `key` just sent (in its `on_submit` callback)."""
    state = st.session_state.get(key)
    return _read(state.get("submit") if state is not None else None)


def _read(value) -> Submission | None:
    """A submission from the browser, checked (the page could send anything); its time clamped."""
    if not isinstance(value, dict):
        return None
    trial, response, confidence, rt = (value.get(k) for k in ("trial", "response", "confidence", "rt_ms"))
    if not isinstance(trial, int) or not isinstance(response, str) or not isinstance(confidence, (str, type(None))) \
            or isinstance(rt, bool) or not isinstance(rt, (int, float)):
        return None
    return Submission(trial, response, confidence, int(min(max(rt, 0), MAX_RT_MS)))


def show_pictures(urls_and_alts: list[tuple[str, str]], caption: str | None = None, width: int | None = None) -> None:
    """Pictures served as static files (the instructions' example), as plain <img> tags."""
    size = f' style="max-width: {width}px"' if width else ""
    figures = "".join(f'<img class="cs-picture" src="{html.escape(url)}" alt="{html.escape(alt)}"{size}>'
                      for url, alt in urls_and_alts)
    note = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    st.html(f'<figure class="cs-pictures">{figures}{note}</figure>')
