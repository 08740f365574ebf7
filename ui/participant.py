"""The participant flow: link -> consent -> instructions -> practice with feedback -> trials ->
questionnaire -> completion code, with "withdraw" on every screen after consent.

The database (through `SurveySession`) is the source of truth for progress; Streamlit's
session state only remembers who this browser tab is and which screen it is on. A reload, a
closed tab or a server restart enters again with the id from the link and the resume credential
the browser keeps (a cookie set at consent), and resumes at the first unanswered trial. Another
browser with the same link sees that the link is in use, and nothing of the participant's.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import streamlit as st

from study.store.identity import PILOT_PARAM, SIGNATURE_PARAM, BadLink, context_from, external_id_from
from study.survey.session import MAX_RT_MS, AlreadyCompleted, ConsentConflict, LinkInUse
from ui import context, language
from ui.language import t
from ui.tasks_view import submit_key, trial_form

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
    language.choose(s.config, p.language)


def _consent(s) -> None:
    st.title(s.config.name)
    if s.pilot_run or st.query_params.get(PILOT_PARAM):
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
        state.phase = "instructions" if agreed else "declined"
    st.rerun()


def _instructions(s) -> None:
    st.header(t("instructions.title"))
    st.markdown(s.config.text_in(language.current()).instructions_md)
    example = context.monitor().instructions_map(st.session_state.get("condition"))
    if example is not None:
        path, name = example
        context.show_stimulus(st, path, width=300, alt=t("instructions.example_alt", name=name),
                              caption=t("instructions.example_caption", name=name))
    st.info(t("instructions.practice"))
    # This page also draws a form and a (disabled) radio, on purpose. Streamlit's browser side
    # loads each kind of widget's code the first time one is drawn. Had the first trial been
    # where the radio and the form first appear, they would be mounted a moment after its page
    # is reported drawn, and a choice made in that moment (before the radio's mount effect has
    # run) shows as checked but is overwritten by the mount and never sent: the answer arrives
    # empty ("Please choose an answer"). Seen for 9 of 20 tabs at question 1 under load, never
    # later; a plain Start button made it worse (the form's code then loads at question 1 too).
    with st.form("start", border=False):
        st.radio(t("instructions.how_to_answer"), [t("instructions.one_option"), t("instructions.another_option")],
                 index=None, horizontal=True, disabled=True, key="example-choice")
        if st.form_submit_button(t("instructions.start"), type="primary"):
            st.session_state.phase = "trials"
            st.rerun()


def _rt_ms(shown_at: datetime) -> int:
    """Milliseconds from when the trial was first shown (stored server side) to now, clamped
    to what the session accepts (a participant may come back to an open trial days later)."""
    if shown_at.tzinfo is None:
        shown_at = shown_at.replace(tzinfo=timezone.utc)
    elapsed = round((datetime.now(timezone.utc) - shown_at).total_seconds() * 1000)
    return min(max(elapsed, 0), MAX_RT_MS)


def _answered_elsewhere(next_index: int) -> bool:
    """Whether this tab just sent an answer to a question another tab had answered meanwhile: its
    Next was clicked, but the server has moved on to a later question (that answer's form is gone,
    so it cannot count for the new question)."""
    shown = st.session_state.get("showing")
    return shown is not None and shown != next_index and bool(st.session_state.get(submit_key(shown)))


def _feedback(fb: dict) -> None:
    st.header(t("feedback.title"))
    if fb["correct"] is True:
        st.success(t("feedback.correct"))
    elif fb["correct"] is False:
        st.error(t("feedback.wrong"))
    if fb["feedback_md"]:
        st.markdown(fb["feedback_md"])
    for path in fb.get("images", ()):
        context.show_stimulus(st, path, width="stretch", alt=t("trial.alt_one"))
    with st.form(f"feedback-{fb['trial_index']}", border=False):
        if st.form_submit_button(t("feedback.continue"), type="primary"):
            del st.session_state["feedback"]
            st.rerun()


def _trials(s) -> None:
    state = st.session_state
    if "feedback" in state:
        _feedback(state.feedback)
        return
    trial = s.next_trial(state.pid)
    if trial is None:
        state.phase = "questionnaire"
        st.rerun()
    if _answered_elsewhere(trial.trial_index):
        state.notice = t("trial.already_answered")
    state.showing = trial.trial_index
    if "notice" in state:
        st.info(state.pop("notice"))
    done, total = s.progress(state.pid)
    st.progress(done / max(total, 1), text=t("trial.progress", n=done + 1, total=total))
    if trial.is_practice:
        st.caption(t("trial.practice"))
    submission = trial_form(trial)
    if submission is None:
        return
    outcome = s.answer(state.pid, trial.trial_index, submission.response,
                       rt_ms=_rt_ms(trial.shown_at), confidence=submission.confidence)
    if outcome.duplicate:   # answered meanwhile in another tab of this browser: say so, move on
        state.notice = t("trial.already_answered")
    elif trial.feedback_md is not None:   # practice, or a trial that always reveals (utility learning)
        state.feedback = {"trial_index": trial.trial_index, "correct": outcome.correct if trial.is_practice else None,
                          "feedback_md": trial.feedback_md, "images": trial.feedback_images}
    st.rerun()


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
            else:
                answers[item.key] = st.text_input(item.label_in(lang), key=f"q-{item.key}")
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
    """The way out, under every screen between consent and the end."""
    st.divider()
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
        st.session_state.phase = "withdrawn"
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
    "in_use": lambda s: _say("info", "in_use"),
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
