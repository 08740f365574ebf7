"""What every page needs from outside Streamlit: the study folder, its shared `SurveySession`, the
page's style and icon, and the calm error message. Cached per server process so reruns stay cheap."""
from __future__ import annotations

import argparse
import base64
import functools
import io
import logging
import os
import sys
import threading
from pathlib import Path

import streamlit as st
from PIL import Image

from study.survey.admin_login import AdminLogin
from study.survey.monitor import StudyMonitor
from study.survey.session import SurveySession
from ui.language import t

STUDY_ENV = "CAMSTUDY_STUDY_DIR"
log = logging.getLogger("camstudy.ui")
# Read and drawn once per process, not on every run of the page.
STYLE = f"<style>{Path(__file__).with_name('style.css').read_text(encoding='utf-8')}</style>"


def _icon() -> str:
    """The page icon, drawn here as a data: URL. A Material icon name would make every participant's
    browser fetch it from a font server that the consent text does not name, and a picture would be
    encoded and registered as a new media file on every run of the page."""
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (27, 108, 168)).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


ICON = _icon()


def calm(render):
    """`render` with an unexpected error shown as a calm message (details go to the server log)."""
    @functools.wraps(render)
    def shown(*args) -> None:
        try:
            render(*args)
        except Exception:  # st.rerun/st.stop are BaseExceptions and pass through
            log.exception("page failed")
            st.error(t("error.unexpected"))
    return shown


def study_dir() -> Path:
    """The study folder: `--study DIR` after `streamlit run app.py --`, else $CAMSTUDY_STUDY_DIR."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--study")
    known, _ = parser.parse_known_args(sys.argv[1:])
    folder = known.study or os.environ.get(STUDY_ENV)
    if not folder:
        raise FileNotFoundError(f"no study folder given (--study DIR or ${STUDY_ENV})")
    return Path(folder).resolve()


# Streamlit runs each browser tab's script in its own thread. SQLite takes one writer at a
# time anyway; letting 20 submits queue inside the database instead holds pooled connections
# through its busy timeout and runs the pool dry (seen in bench/survey_load.py). So at most
# this many session calls are in flight per server process; each takes milliseconds.
DB_CALLS_IN_FLIGHT = 4


class _Bounded:
    """A `SurveySession` whose method calls pass through a shared semaphore."""

    def __init__(self, inner: SurveySession, slots: int):
        self._inner, self._slots = inner, threading.BoundedSemaphore(slots)

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            with self._slots:
                return attr(*args, **kwargs)
        return call


@st.cache_resource(show_spinner=False)
def _open(folder: str) -> _Bounded:
    return _Bounded(SurveySession(Path(folder)), DB_CALLS_IN_FLIGHT)


def session() -> SurveySession:
    """The one `SurveySession` of this server process (thread-safe), shared by all tabs."""
    return _open(str(study_dir()))


@st.cache_resource(show_spinner=False)
def _monitor(folder: str) -> _Bounded:
    survey = _open(folder)
    return _Bounded(StudyMonitor(survey.built, survey.db), DB_CALLS_IN_FLIGHT)


@st.cache_resource(show_spinner=False)
def _admin_login(folder: str) -> AdminLogin:
    survey = _open(folder)
    return AdminLogin(survey.db, survey.study_id)


def admin_login() -> AdminLogin:
    """The admin password check, throttled across every tab and process (the database counts)."""
    return _admin_login(str(study_dir()))


def monitor() -> StudyMonitor:
    """The admin queries (progress, the instructions' example) over the same design and database."""
    return _monitor(str(study_dir()))
