"""The researcher's page (/admin): progress, live per-method results, participants, erasure on
request, and the export CSVs, behind a password.

The password comes from $CAMSTUDY_ADMIN_PASSWORD or Streamlit secrets `admin_password`, is
typed into a form (never taken from the URL) and compared in constant time; failures are
throttled per client address, with a ceiling for everyone (`study.survey.admin_login`). With
neither set the page stays locked. The CSVs
are written into the study folder on request, never offered as downloads: a Streamlit download
is a URL that anyone could fetch, without signing in, for a while after the page showed it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from study.store import erasure
from study.store.identity import link_secret
from study.survey.admin_login import LoginLocked
from study.results.export import export_tables, write_exports
from ui import context
from ui.tasks_view import show_trial

EXPORT_DIR = "export"

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
        try:   # the address as the server saw it: behind a trusted proxy, the one the proxy forwarded
            ok = context.admin_login().check(given, expected, st.context.ip_address)
        except LoginLocked as locked:
            st.error(f"Too many failed attempts: {locked}. `camstudy admin-unlock STUDY` opens it now.")
            return False
        if ok:
            st.session_state.admin_ok = True
            st.rerun()
        time.sleep(1)  # slows down guessing from this tab; the lockout counts every tab of an address
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
    withdrawals = int(tables["withdrawals"]["n"].sum()) if len(tables["withdrawals"]) else 0
    a, b, c, d, e = st.columns(5)
    a.metric("Participants", len(people), help="People who answered the consent page")
    b.metric("Completed", n_done)
    c.metric("Excluded", n_excl)
    d.metric("Withdrawn or erased", withdrawals)
    e.metric("Consent page views", context.monitor().link_views(),
             help="Every showing of the consent page to someone who had not answered it yet, reloads and "
                  "people who then answered included (counted, nothing stored about them)")
    _progress(context.monitor().cell_progress())
    _results(tables["summary"])
    pilot = people["is_pilot"].fillna(False).astype(bool) if len(people) else pd.Series(dtype=bool)
    st.subheader("Participants")
    st.dataframe(people[~pilot], hide_index=True, width="stretch")
    if pilot.any():
        st.subheader("Pilot participants")
        st.caption("Left out of the results above; `camstudy reset-pilot STUDY` removes them before the launch.")
        st.dataframe(people[pilot], hide_index=True, width="stretch")
    _preview(s)
    _participant_requests(s)
    st.subheader("Exports")
    st.caption("The CSV files, their codebook and analysis are written into the study folder on the "
               "server (not offered for download: a download link would be reachable without signing in).")
    if st.button("Write the CSV files"):
        written = write_exports(folder, Path(folder) / EXPORT_DIR)
        st.success(f"Wrote {len(written)} files to {Path(folder) / EXPORT_DIR}.")
    if st.button("Sign out"):
        del st.session_state["admin_ok"]
        st.rerun()


def _preview(s) -> None:
    """Any trial of any task exactly as a participant sees it; nothing is recorded."""
    with st.expander("Preview a trial"):
        trials = sorted(s.built.trials.values(), key=lambda t: (t.task_position, t.role != "main", t.id))
        labels = {t.id: f"{t.task} · {t.role} · {t.image_id} · {t.method}" + (f" vs {t.method_b}" if t.method_b else "")
                  + (f" · {t.model} / {t.model_b}" if t.model_b else "") for t in trials}
        chosen = st.selectbox("Trial", list(labels), format_func=labels.__getitem__, key="preview-trial")
        if chosen is not None:
            st.caption("As a participant sees it (one of its shuffled orders). Answers here are not recorded.")
            if show_trial(s.preview(chosen), s.stimuli.url, key=f"preview-{chosen}") is not None:
                st.info("Preview only: nothing was recorded.")


def _participant_requests(s) -> None:
    """Erasure on request, and moving a participant's link to another browser."""
    st.subheader("Participant requests")
    with st.form("erase", clear_on_submit=True):
        external_id = st.text_input("Participant id (from their link)")
        sure = st.checkbox("Erase all of this participant's answers and records; this cannot be undone")
        erase, release = st.columns(2)
        erase_it = erase.form_submit_button("Erase")
        release_it = release.form_submit_button("Let another browser continue this link")
    if erase_it:
        if not sure:
            st.warning("Tick the box to confirm the erasure.")
        elif erasure.erase(s.db, s.study_id, external_id.strip(), "admin page", secret=link_secret(s.study_dir)):
            _tables.clear()
            st.success("Erased from the database. The audit log notes that an erasure happened, not whose, and a "
                       "keyed hash of the id keeps the link from starting again. CSV files written before still "
                       "hold this participant's rows: write them again, and delete copies made elsewhere.")
        else:
            st.error("No participant with that id in this study.")
    if release_it:
        if erasure.release(s.db, s.study_id, external_id.strip()):
            st.success("Released: the next browser that opens this link continues it.")
        else:
            st.error("No participant with that id in this study.")


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
