"""Keyboard shortcuts for trial forms: digits pick a choice, Enter submits.

Streamlit forms only submit on Enter from a text field, and radio buttons need Tab and arrow
keys; participants answering many trials are faster with 1-9 + Enter. The script listens on
the page once (a flag on `window` survives reruns) and clicks the same elements a mouse would,
so the answer still goes through the form.
"""
from __future__ import annotations

import streamlit as st

_SCRIPT = """<script>
(() => {
  if (window.__camstudyKeys) return;
  window.__camstudyKeys = true;
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "BUTTON" ||
              (t.tagName === "INPUT" && t.type !== "radio"))) return;
    const form = document.querySelector('[data-testid="stForm"]');
    if (!form) return;
    if (e.key === "Enter") {
      const button = form.querySelector('[data-testid="stFormSubmitButton"] button');
      if (button) { e.preventDefault(); button.click(); }
      return;
    }
    const n = parseInt(e.key, 10);
    if (!(n >= 1 && n <= 9)) return;
    // The first question without a choice yet (answer, then confidence), else the focused one.
    const groups = [...form.querySelectorAll('[role="radiogroup"]')];
    const group = groups.find(g => !g.querySelector("input:checked"))
      || groups.find(g => g.contains(document.activeElement)) || groups[0];
    const labels = group ? group.querySelectorAll("label") : [];
    if (labels[n - 1]) { e.preventDefault(); labels[n - 1].click(); }
  }, true);  // capture: the radio buttons' own key handling must not swallow Enter
})();
</script>"""


def install_shortcuts() -> None:
    st.html(_SCRIPT, unsafe_allow_javascript=True)
