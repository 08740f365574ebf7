"""Entry point run by `camstudy serve`: page setup, styling, and the two pages — the survey at
/ and the admin page at /admin (hidden from navigation, so participants never see a link)."""
from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st
from PIL import Image

from ui import admin, participant

log = logging.getLogger("camstudy.ui")


def _guarded(render):
    """Run a page; an unexpected error becomes a calm message (details go to the server log)."""
    def page() -> None:
        try:
            render()
        except Exception:  # st.rerun/st.stop are BaseExceptions and pass through
            log.exception("page failed")
            st.error("Sorry, something went wrong on our side. Your answers so far are saved; "
                     "please reload this page in a moment.")
    page.__name__ = render.__module__.rsplit(".", 1)[-1]
    return page


# The icon is drawn here and served by the study server: a Material icon name would make every
# participant's browser fetch it from a font server that the consent text does not name.
ICON = Image.new("RGB", (32, 32), (27, 108, 168))
st.set_page_config(page_title="Study", page_icon=ICON, layout="centered", menu_items={})
st.html(Path(__file__).with_name("style.css"))
st.navigation([
    st.Page(_guarded(participant.page), title="Study", url_path="", default=True),
    st.Page(_guarded(admin.page), title="Admin", url_path="admin"),
], position="hidden").run()
