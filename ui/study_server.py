"""The study server `camstudy serve` runs: the Streamlit app (`app.py`) and the stimuli as static files.

`streamlit run` sees the `st.App` below and serves it with uvicorn. Besides Streamlit's own routes,
/stimuli/<name> serves the published stimuli (`study.survey.stimulus_files`) from the study folder,
cacheable for a year: pages load pictures by URL instead of through Streamlit's in-memory media
store, so any server process, or the reverse proxy in front of them, can serve any picture, and the
websocket carries only what changed.
"""
from __future__ import annotations

import functools

import streamlit as st
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from study.survey.stimulus_files import CACHE_CONTROL, URL_PREFIX, public_file
from ui.context import study_dir


_study_dir = functools.cache(study_dir)   # from the command line, read once


async def stimulus(request: Request) -> Response:
    path = public_file(_study_dir(), request.path_params["name"])
    if path is None:
        return Response(status_code=404)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": CACHE_CONTROL})


app = st.App("app.py", routes=[Route(URL_PREFIX + "{name}", stimulus)])
