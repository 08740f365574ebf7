"""The study server `camstudy serve` runs: the Streamlit app (`app.py`), and files that never change.

`streamlit run` sees the `st.App` below and serves it with uvicorn. In front of Streamlit's own routes,
`ui.static_files` answers /stimuli/<name> (the published stimuli, `study.survey.stimulus_files`) and
Streamlit's page assets from memory, cacheable for a year: pages load pictures by URL instead of
through Streamlit's in-memory media store, so any server process, or the reverse proxy in front of them,
can serve any picture, and the websocket carries only what changed.
"""
from __future__ import annotations

import functools
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

import ui.participant  # noqa: F401  (loaded now, as the server starts, not at the first participant's page)
from ui import context
from ui.context import study_dir
from ui.static_files import StaticFiles

context.session()   # the study read as the server starts, not while the first participant waits

app = st.App("app.py", middleware=[Middleware(StaticFiles, streamlit_static=Path(st.__file__).parent / "static" / "static",
                                              study_dir=functools.cache(study_dir))])
