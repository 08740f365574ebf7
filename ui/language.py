"""The language of a browser tab: chosen once when the tab enters, then used for every string.

The survey's own strings come from `study.protocol.messages`; this module only remembers which language
the tab speaks (`st.session_state.lang`) and looks strings up in it, so pages call `t(key)`.
"""
from __future__ import annotations

import streamlit as st

from study.protocol.messages import DEFAULT_LANGUAGE, choose_language, message

LANG_PARAM = "lang"


def choose(config, participant_language: str | None = None) -> str:
    """Set and return the tab's language: a resumed participant keeps the language they consented
    in (their trials are worded in it); otherwise `?lang=`, else the browser's Accept-Language
    (or its reported locale), else the study's default, among the study's languages."""
    if participant_language in config.languages:
        language = participant_language
    else:
        browser = st.context.headers.get("Accept-Language") or st.context.locale or ""
        language = choose_language(config.languages, config.language, st.query_params.get(LANG_PARAM), browser)
    st.session_state.lang = language
    return language


def current() -> str:
    """The tab's language (the default before it is chosen: a page drawn before entering)."""
    return st.session_state.get("lang", DEFAULT_LANGUAGE)


def t(key: str, **fields) -> str:
    """The survey string `key` in the tab's language."""
    return message(current(), key, **fields)
