"""Entry point of the survey's pages (`ui/study_server.py` serves it): page setup, styling, and the two
pages — the survey at / and the admin page at /admin (hidden from navigation, so participants never
see a link)."""
from __future__ import annotations

import streamlit as st

from ui import admin, context, participant


def _page(render):
    """A page that shows an unexpected error as a calm message (named as its module, for the URL)."""
    page = context.calm(render)
    page.__name__ = render.__module__.rsplit(".", 1)[-1]
    return page


st.set_page_config(page_title="Study", page_icon=context.ICON, layout="centered", menu_items={})
st.html(context.STYLE)
st.navigation([
    st.Page(_page(participant.page), title="Study", url_path="", default=True),
    st.Page(_page(admin.page), title="Admin", url_path="admin"),
], position="hidden").run()
