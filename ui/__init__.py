"""The Streamlit survey: the participant flow (`participant`), trial screens (`tasks_view`) and
the password-protected admin page (`admin`). `app.py` is the script `camstudy serve` runs; all
storage goes through `study.survey.session` and `study.results.export`, never SQL."""
