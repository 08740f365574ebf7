"""The participant flow: link -> consent -> instructions -> practice with feedback -> trials ->
questionnaire -> completion code, with "withdraw" on every screen after consent.

The database (through `SurveySession`) is the source of truth for progress; Streamlit's
session state only remembers who this browser tab is, which screen it is on, and the participant's
plan (read once, so that each answer is one database write and no read). A reload, a closed tab or a
server restart enters again with the id from the link and the resume credential the browser keeps
(a cookie set at consent), and resumes at the first unanswered trial. Another browser with the same
link sees that the link is in use, and nothing of the participant's, unless it gives the resume
code shown at consent.

The trial screens are a fragment: an answer reruns only the trial's part of the page, and the
answer itself is stored in the component's callback, before that rerun draws the next trial.
"""
from __future__ import annotations

import hashlib
import json

import streamlit as st

from study.store.identity import PILOT_PARAM, SIGNATURE_PARAM, BadLink, context_from, external_id_from
from study.survey.session import FREE_TEXT_LIMIT, AlreadyCompleted, ConsentConflict, LinkInUse, WrongResumeCode
from ui import context, language
from ui.language import t
from ui.tasks_view import show_pictures, show_trial, submission

CREDENTIAL_DAYS = 90      # how long a browser keeps its resume credential


def _say(kind: str, page: str, body: str | None = None) -> None:
    """A page with only a heading and a notice: the strings `<page>.title` and `<page>.body`."""
    st.header(t(f"{page}.title"))
    getattr(st, kind)(t(body or f"{page}.body"))


def _cookie_name(s, external_id: str) -> str:
    """One cookie per study and participant id (hashed: ids may hold characters cookies do not)."""
    digest = hashlib.sha256(f"{s.config_hash}|{external_id}".encode()).hexdigest()[:20]
    return f"camstudy_{digest}"


def _keep_credential(s, external_id: str, credential: str | None) -> None:
    """Ask the browser to keep the resume credential (on the next page drawn)."""
    if credential:
        st.session_state.cookie = (_cookie_name(s, external_id), credential)


def _write_cookie() -> None:
    name, value = st.session_state.pop("cookie")
    script = (f"document.cookie = {json.dumps(f'{name}={value}')} + "
              f"'; path=/; max-age={CREDENTIAL_DAYS * 86400}; SameSite=Strict';")
    st.html(f"<script>{script}</script>", unsafe_allow_javascript=True)


def _link() -> tuple[str | None, str | None]:
    params = st.query_params
    return external_id_from(params), params.get(SIGNATURE_PARAM)


def _enter(s) -> None:
    """Read the link once, resume the participant or meet a new one, choose the first screen."""
    state = st.session_state
    external, signature = _link()
    language.choose(s.config)
    try:
        p = s.enter(external, signature=signature,
                    credential=st.context.cookies.get(_cookie_name(s, external)) if external else None)
    except BadLink:
        state.phase = "bad_link"
        return
    except LinkInUse:
        state.external = external
        state.phase = "in_use"
        return
    except AlreadyCompleted as closed:
        if closed.completion_code is not None:   # finished earlier in this browser: show the code again
            state.code, state.redirect = closed.completion_code, closed.redirect_url
            state.phase = "done_again"
        else:                                    # declined consent or withdrew earlier
            state.phase = "closed"
        return
    if external is None:
        # So that a reload of this tab resumes instead of starting a new participant.
        st.query_params["pid"] = p.external_id
    state.external = p.external_id
    _keep_credential(s, p.external_id, p.credential)
    if p.participant_id is None:
        state.phase = "consent"
        return
    _admitted(s, p)
    state.phase = "instructions" if p.n_done == 0 else "trials"


def _admitted(s, p) -> None:
    """Remember who this tab is, their condition and the language they took the study in."""
    st.session_state.pid, st.session_state.condition = p.participant_id, p.condition
    st.session_state.pop("plan", None)
    language.choose(s.config, p.language)


def _consent(s) -> None:
    st.title(s.config.name)
    if s.is_pilot(st.session_state.external, st.query_params.get(PILOT_PARAM)):   # only a real pilot link
        st.warning(t("consent.pilot"))
    st.markdown(s.config.text_in(language.current()).consent_md)
    agree, decline = st.columns(2)
    if agree.button(t("consent.agree"), type="primary", width="stretch"):
        _answer_consent(s, True)
    if decline.button(t("consent.decline"), width="stretch"):
        _answer_consent(s, False)


def _answer_consent(s, agreed: bool) -> None:
    state = st.session_state
    _, signature = _link()
    try:
        p = s.consent(state.external, agreed, signature=signature, context=context_from(st.query_params),
                      user_agent=st.context.headers.get("User-Agent", ""), pilot=st.query_params.get(PILOT_PARAM),
                      credential=st.context.cookies.get(_cookie_name(s, state.external)),
                      language=language.current())
    except ConsentConflict:
        state.phase = "conflict"
    except LinkInUse:
        state.phase = "in_use"
    except AlreadyCompleted:
        state.phase = "closed"
    else:
        _admitted(s, p)
        _keep_credential(s, state.external, p.credential)
        if p.resume_code:
            state.resume_code = p.resume_code
        state.phase = "instructions" if agreed else "declined"
    st.rerun()


def _instructions(s) -> None:
    st.header(t("instructions.title"))
    if "resume_code" in st.session_state:
        st.info(t("resume.code", code=st.session_state.resume_code))
    st.markdown(s.config.text_in(language.current()).instructions_md)
    example = context.monitor().instructions_map(st.session_state.get("condition"), language.current())
    if example is not None:
        path, name = example
        show_pictures([(s.stimuli.url(path), t("instructions.example_alt", name=name))],
                      caption=t("instructions.example_caption", name=name), width=300)
    if s.built.practice:   # a study without practice (any utility-only study) must not promise feedback
        st.info(t("instructions.practice"))
    st.markdown(t("instructions.how_to_answer"))
    if st.button(t("instructions.start"), type="primary"):
        st.session_state.phase = "trials"
        st.rerun()


def _plan(s):
    """This tab's copy of the participant's plan (read from the database once per tab)."""
    state = st.session_state
    if state.get("plan") is None:
        state.plan = s.plan(state.pid)
    return state.plan


def _answered(s, key: str) -> None:
    """The trial component's callback: store the answer the page sent, before the rerun draws on.

    A submission for a trial other than the one this tab shows (one sent twice, or a stale page)
    is ignored; one that another tab answered first is reported, and the tab moves on."""
    state = st.session_state
    sent, trial = submission(key), state.get("trial")
    if sent is None or trial is None or sent.trial_index != trial.trial_index:
        return
    try:
        outcome = s.submit(_plan(s), trial.trial_index, sent.response, sent.rt_ms, sent.confidence)
    except Exception:   # shown as the calm error message by the page that follows
        context.log.exception("storing an answer failed")
        state.failed = True
        return
    state.trial = None    # the next one comes from the plan
    if outcome.elsewhere:
        state.notice = t("trial.already_answered")
    elif outcome.stored and trial.feedback_md is not None:   # practice
        state.feedback = {"trial_index": trial.trial_index, "correct": outcome.correct,
                          "feedback_md": trial.feedback_md}


def _feedback(fb: dict) -> None:
    st.header(t("feedback.title"))
    if fb["correct"] is True:
        st.success(t("feedback.correct"))
    elif fb["correct"] is False:
        st.error(t("feedback.wrong"))
    if fb["feedback_md"]:
        st.markdown(fb["feedback_md"])
    # Dropped in the click's callback, so that the rerun it causes draws the next trial at once.
    st.button(t("feedback.continue"), type="primary", key=f"feedback-{fb['trial_index']}",
              on_click=lambda: st.session_state.pop("feedback", None))


@st.fragment
@context.calm
def _trials(s) -> None:
    """The trial screens: one trial, or a practice answer's feedback; reruns on its own (so it keeps
    the calm error message of its own: a fragment's rerun does not pass through the page's)."""
    state = st.session_state
    if state.pop("failed", False):
        raise RuntimeError("storing an answer failed (see the log above)")
    if "feedback" in state:
        _feedback(state.feedback)
        return
    plan = _plan(s)
    trial = state.get("trial")
    if trial is None or trial.trial_index in plan.answered:
        trial = state.trial = s.show(plan)
    if trial is None:
        state.phase = "questionnaire"
        st.rerun()
    if "notice" in state:
        st.info(state.pop("notice"))
    st.progress(plan.n_done / max(plan.n_total, 1), text=t("trial.progress", n=plan.n_done + 1, total=plan.n_total))
    if trial.is_practice:
        st.caption(t("trial.practice"))
    key = f"trial-{trial.trial_index}"
    show_trial(trial, s.stimuli.url, key=key, on_submit=lambda: _answered(s, key))


def _questionnaire(s) -> None:
    st.header(t("questionnaire.title"))
    st.markdown(t("questionnaire.intro"))
    answers, lang = {}, language.current()
    with st.form("questionnaire", border=False):
        for item in s.config.questionnaire:
            if item.options:   # the default language's option is stored, this language's shown
                labels = dict(item.options_in(lang))
                answers[item.key] = st.radio(item.label_in(lang), list(labels), format_func=labels.__getitem__,
                                             index=None, key=f"q-{item.key}")
            else:   # The limit is said in the box; the session keeps that much of a longer text. No max_chars:
                    # Streamlit's box would silently drop a paste that is too long, text and all.
                limit = t("questionnaire.limit", limit=FREE_TEXT_LIMIT)
                answers[item.key] = st.text_area(item.label_in(lang), key=f"q-{item.key}", placeholder=limit, help=limit)
        finished = st.form_submit_button(t("questionnaire.finish"), type="primary")
    if finished:
        code = s.complete(st.session_state.pid, {k: v for k, v in answers.items() if v})
        st.session_state.code = code
        st.session_state.redirect = s.redirect_url(st.session_state.pid)
        st.session_state.phase = "done"
        st.rerun()


def _done(s, again: bool = False) -> None:
    page = "done_again" if again else "done"   # again: the link was opened after finishing (a reload)
    st.header(t(f"{page}.title"))
    st.success(t(f"{page}.body"))
    debrief = s.config.text_in(language.current()).debrief_md
    if debrief:
        st.markdown(debrief)
    st.markdown(f"**{t('done.code')}**")
    st.code(st.session_state.code, language=None)
    if st.session_state.redirect:
        st.link_button(t("done.return"), st.session_state.redirect, type="primary")


def _withdraw_offer() -> None:
    """The way out, under every screen between consent and the end (and the resume code, if this tab
    was shown it)."""
    st.divider()
    if "resume_code" in st.session_state:
        st.caption(t("resume.reminder", code=st.session_state.resume_code))
    if st.button(t("withdraw.offer"), type="tertiary", key="withdraw"):
        st.session_state.before_withdrawal = st.session_state.phase
        st.session_state.phase = "confirm_withdrawal"
        st.rerun()


def _confirm_withdrawal(s) -> None:
    st.header(t("withdraw.title"))
    st.markdown(t(f"withdraw.body_{s.config.on_withdraw}"))
    stay, leave = st.columns(2)
    if stay.button(t("withdraw.stay"), width="stretch"):
        st.session_state.phase = st.session_state.pop("before_withdrawal")
        st.rerun()
    if leave.button(t("withdraw.leave"), type="primary", width="stretch"):
        s.withdraw(st.session_state.pid)
        st.session_state.pop("resume_code", None)
        st.session_state.phase = "withdrawn"
        st.rerun()


def _in_use(s) -> None:
    """Another browser holds this link: the participant may move here with their resume code."""
    _say("info", "in_use")
    with st.form("resume", border=False):
        code = st.text_input(t("in_use.code"), max_chars=20, key="resume-code")
        moved = st.form_submit_button(t("in_use.continue"), type="primary")
    if not moved or not code.strip():
        return
    state = st.session_state
    try:
        p = s.resume_with_code(state.external, code, signature=_link()[1])
    except WrongResumeCode as wrong:
        st.error(t("in_use.wrong_code", tries=wrong.tries_left))
        return
    except LinkInUse:
        st.error(t("in_use.locked"))
        return
    except AlreadyCompleted:
        state.phase = "closed"
        st.rerun()
    _admitted(s, p)
    _keep_credential(s, state.external, p.credential)
    state.phase = "instructions" if p.n_done == 0 else "trials"
    st.rerun()


_SCREENS = {
    "consent": _consent,
    "instructions": _instructions,
    "trials": _trials,
    "questionnaire": _questionnaire,
    "done": _done,
    "done_again": lambda s: _done(s, again=True),
    "confirm_withdrawal": _confirm_withdrawal,
    "withdrawn": lambda s: _say("info", "withdrawn", f"withdrawn.body_{s.config.on_withdraw}"),
    "in_use": _in_use,
    "conflict": lambda s: _say("warning", "conflict"),
    "declined": lambda s: _say("info", "declined"),
    "closed": lambda s: _say("info", "closed"),
    "bad_link": lambda s: _say("warning", "bad_link"),
}


_WITHDRAWABLE = ("instructions", "trials", "questionnaire")


def page() -> None:
    s = context.session()
    if "phase" not in st.session_state:
        _enter(s)
    if "cookie" in st.session_state:
        _write_cookie()
    phase = st.session_state.phase
    _SCREENS[phase](s)
    if phase in _WITHDRAWABLE:
        _withdraw_offer()
