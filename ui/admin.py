"""The researcher's page (/admin): progress, live per-method results, participants and every
export CSV, behind a password.

The password comes from $CAMSTUDY_ADMIN_PASSWORD or Streamlit secrets `admin_password`, is
typed into a form (never taken from the URL) and compared in constant time. With neither set
the page stays locked.
"""
from __future__ import annotations

import hmac
import os
import time

import altair as alt
import pandas as pd
import streamlit as st

from study.export import csv_bytes, export_tables
from ui import context

PASSWORD_ENV = "CAMSTUDY_ADMIN_PASSWORD"


def expected_password() -> str | None:
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    try:
        return st.secrets.get("admin_password") or None
    except FileNotFoundError:  # no secrets.toml anywhere
        return None


def _login(expected: str) -> bool:
    if st.session_state.get("admin_ok"):
        return True
    with st.form("admin-login"):
        given = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if hmac.compare_digest(given.encode(), expected.encode()):
            st.session_state.admin_ok = True
            st.rerun()
        time.sleep(1)  # slows down guessing
        st.error("Wrong password.")
    return False


@st.cache_data(ttl=20, show_spinner="Computing results…")
def _tables(folder: str) -> dict[str, pd.DataFrame]:
    return export_tables(folder)


def _progress(cells: pd.DataFrame) -> None:
    st.subheader("Progress")
    by_task = cells.groupby("task")[["n_answers", "target"]].sum()
    for task, row in by_task.iterrows():
        share = min(row.n_answers / row.target, 1.0) if row.target else 0.0
        st.progress(share, text=f"{task}: {row.n_answers} of {row.target} answers")
    with st.expander("Per cell (task × image × method)"):
        st.dataframe(cells, hide_index=True, width="stretch")


def _results(summary: pd.DataFrame) -> None:
    st.subheader("Results per method")
    st.caption("Estimates with 95% intervals (Wilson for proportions, bootstrap over "
               "participants otherwise); excluded participants left out.")
    if summary.empty:
        st.info("No answers to analyse yet.")
        return
    for (task, measure), rows in summary.groupby(["task", "measure"], sort=False):
        base = alt.Chart(rows).encode(y=alt.Y("method:N", title=None))
        chart = (base.mark_rule().encode(x=alt.X("ci_low:Q", title=f"{task}: {measure}"),
                                         x2="ci_high:Q")
                 + base.mark_point(filled=True, size=60).encode(
                     x="estimate:Q", tooltip=["method", "model", "n", "estimate", "ci_low",
                                              "ci_high"]))
        st.altair_chart(chart.properties(height=32 * rows["method"].nunique() + 40),
                        width="stretch")
    with st.expander("Summary table"):
        st.dataframe(summary, hide_index=True, width="stretch")


def _dashboard(s) -> None:
    folder = str(context.study_dir())
    top = st.columns([3, 1])
    top[0].caption(f"Config hash `{s.config_hash}`")
    if top[1].button("Refresh", width="stretch"):
        _tables.clear()
    tables = _tables(folder)
    people = tables["participants"]
    n_done = int(people["completed_at"].notna().sum()) if len(people) else 0
    n_excl = int(people["excluded"].fillna(False).astype(bool).sum()) if len(people) else 0
    a, b, c = st.columns(3)
    a.metric("Participants", len(people))
    b.metric("Completed", n_done)
    c.metric("Excluded", n_excl)
    _progress(context.monitor().cell_progress())
    _results(tables["summary"])
    st.subheader("Participants")
    st.dataframe(people, hide_index=True, width="stretch")
    st.subheader("Downloads")
    cols = st.columns(4)
    for i, (name, df) in enumerate(tables.items()):
        cols[i % 4].download_button(f"{name}.csv", csv_bytes(name, df),
                                    file_name=f"{name}.csv", mime="text/csv",
                                    width="stretch", on_click="ignore")
    if st.button("Sign out"):
        del st.session_state["admin_ok"]
        st.rerun()


def page() -> None:
    s = context.session()
    st.title(f"{s.config.name} — admin")
    expected = expected_password()
    if not expected:
        st.warning(f"The admin page is locked: no password is configured. Set {PASSWORD_ENV} "
                   "or `admin_password` in Streamlit secrets and restart the server.")
        return
    if _login(expected):
        _dashboard(s)
