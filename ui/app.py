"""Entry point of the survey's pages (`ui/study_server.py` serves it): page setup, styling, and the two
pages — the survey at / and the admin page at /admin (hidden from navigation, so participants never
see a link)."""
from __future__ import annotations

import streamlit as st

from ui import context, participant


def admin() -> None:
    """The admin page, imported on its first visit: a process that only serves participants never loads
    the analysis and charting libraries it needs (a second or more of CPU at its first page)."""
    from ui import admin as page
    page.page()


st.set_page_config(page_title="Study", page_icon=context.ICON, layout="centered", menu_items={})
st.html(context.STYLE)
st.navigation([
    st.Page(context.calm(participant.page), title="Study", url_path="", default=True),
    st.Page(context.calm(admin), title="Admin", url_path="admin"),
], position="hidden").run()
