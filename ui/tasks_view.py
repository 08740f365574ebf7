"""One trial on screen: its images, prompt and choices in a single form, so an answer is sent
atomically with one click (or Enter). Task-specific wording comes from the session's
`TrialView`; this module only lays it out."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from ui import context
from ui.language import t
from ui.shortcuts import install_shortcuts


@dataclass(frozen=True)
class Submission:
    response: str
    confidence: str | None


def _per_row(n_images: int) -> int:
    # One row keeps the choices in view under the maps on a laptop screen (two rows of HIVE's
    # four maps pushed them below the fold); Streamlit stacks columns on a phone by itself.
    return n_images if n_images <= 4 else 3


def _alt(index: int, caption: str, n: int) -> str:
    """Alt text of a stimulus: what it is, for screen readers."""
    where = t("trial.alt_of", index=index + 1, n=n) if n > 1 else t("trial.alt_one")
    return where + (f" ({caption})" if caption else "")


def show_images(trial) -> None:
    per_row = _per_row(len(trial.images))
    captions = list(trial.captions) + [""] * (len(trial.images) - len(trial.captions))
    for start in range(0, len(trial.images), per_row):
        cols = st.columns(per_row)
        shown = zip(cols, trial.images[start:start + per_row], captions[start:start + per_row])
        for offset, (col, path, caption) in enumerate(shown):
            context.show_stimulus(col, path, caption=caption or None, width="stretch",
                                  alt=_alt(start + offset, caption, len(trial.images)))


def _choice(label: str, options, key: str) -> str | None:
    labels = dict(options)
    return st.radio(label, list(labels), format_func=labels.__getitem__, index=None,
                    horizontal=True, key=key)


def submit_key(trial_index: int) -> str:
    """The widget key of a trial's Next button: true in the run that follows its click."""
    return f"next-{trial_index}"


def trial_form(trial) -> Submission | None:
    """Render the trial; return the submission on a valid submit, else None.

    The form and its widgets are keyed by the trial index: a second click that arrives after
    the next trial is on screen belongs to a form that no longer exists, so it cannot be taken
    as an answer to the new trial.
    """
    with st.form(f"trial-{trial.trial_index}", border=False):
        st.markdown(trial.prompt_md)  # the question first: on a phone the maps fill the screen
        show_images(trial)
        # A trial without options is one to study: Next goes on, and "" is stored.
        response = _choice(t("trial.your_answer"), trial.options, f"answer-{trial.trial_index}") if trial.options else ""
        confidence = None
        if trial.confidence_options:
            confidence = _choice(t("trial.how_confident"), trial.confidence_options,
                                 f"confidence-{trial.trial_index}")
        submitted = st.form_submit_button(t("trial.next"), type="primary", key=submit_key(trial.trial_index))
    # Hidden on touch screens (style.css), which have no keys to press.
    st.markdown(f'<p class="keyboard-hint">{t("trial.keyboard_hint")}</p>', unsafe_allow_html=True)
    install_shortcuts()
    if not submitted:
        return None
    if response is None or (trial.confidence_options and confidence is None):
        st.warning(t("trial.choose_with_confidence" if trial.confidence_options else "trial.choose"))
        return None
    return Submission(response, confidence)
