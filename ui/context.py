"""What every page needs from outside Streamlit: the study folder, its shared `SurveySession`,
and stimulus bytes. Cached per server process so reruns stay cheap."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import streamlit as st

from study.session import SurveySession

STUDY_ENV = "CAMSTUDY_STUDY_DIR"


def study_dir() -> Path:
    """The study folder: `--study DIR` after `streamlit run app.py --`, else $CAMSTUDY_STUDY_DIR."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--study")
    known, _ = parser.parse_known_args(sys.argv[1:])
    folder = known.study or os.environ.get(STUDY_ENV)
    if not folder:
        raise FileNotFoundError(f"no study folder given (--study DIR or ${STUDY_ENV})")
    return Path(folder).resolve()


@st.cache_resource(show_spinner=False)
def _open(folder: str) -> SurveySession:
    return SurveySession(Path(folder))


def session() -> SurveySession:
    """The one `SurveySession` of this server process (it is thread-safe)."""
    return _open(str(study_dir()))


@st.cache_data(show_spinner=False, max_entries=512)
def png_bytes(path: str) -> bytes:
    """Stimulus bytes, read from disk once per server process: stimuli never change after build."""
    return Path(path).read_bytes()
