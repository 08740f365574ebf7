"""Layer `survey`: the participant flow and the admin's queries, without Streamlit.

Holds `SurveySession` (enter, consent, trials, answers, completion), `StudyMonitor` (the admin page's
queries), the throttled admin sign-in and the simulator of participants. May import: `study.store`,
`study.protocol`. Never imports torch: the survey process starts without it.
"""
