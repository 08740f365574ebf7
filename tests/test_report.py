"""camstudy report: one self-contained, escaped HTML page with the study's figures and tables."""
import base64
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from _export_fixtures import METHODS, populate_study, synthetic_faithfulness, synthetic_results

from study.cli import main

VOID = {"meta", "img", "br", "hr", "link", "input"}


class _Checker(HTMLParser):
    """Collects tags, image sources and anything that would reach outside the page."""

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.external, self.headings, self.errors = [], [], [], [], []
        self._in_heading = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if key in attrs and not str(attrs[key]).startswith("data:"):
                self.external.append(attrs[key])
        if tag == "script":
            self.external.append("<script>")
        if tag not in VOID:
            self.stack.append(tag)
        self._in_heading = tag in ("h1", "h2")

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)
        self._in_heading = False

    def handle_data(self, data):
        if self._in_heading:
            self.headings.append(data)


def _parse(path):
    checker = _Checker()
    checker.feed(path.read_text(encoding="utf-8"))
    assert not checker.errors and not checker.stack, "unbalanced tags"
    return checker


@pytest.fixture(scope="module")
def scored_study(tmp_path_factory):
    folder = populate_study(tmp_path_factory.mktemp("study"))
    responses, _ = synthetic_results()
    faith = synthetic_faithfulness(responses)
    odd = faith.assign(metric="<b>odd</b>", value=-faith["value"])  # text from a file must be escaped
    pd.concat([faith, odd]).to_csv(folder / "faithfulness.csv", index=False)
    fractions = np.linspace(0, 1, 5)
    curves = [("efficientnet_lite0", m, kind, f, (1 - f if kind == "deletion" else f) * (0.5 + 0.1 * i))
              for i, m in enumerate(METHODS) for kind in ("deletion", "insertion") for f in fractions]
    # The layout study.scoring.scorer writes (curves.csv next to faithfulness.csv).
    pd.DataFrame(curves, columns=["model", "method", "curve", "fraction", "value"]).to_csv(
        folder / "curves.csv", index=False)
    return folder


def test_report_is_one_self_contained_page(scored_study, tmp_path):
    assert main(["report", str(scored_study), "--out", str(tmp_path)]) == 0
    page = tmp_path / "index.html"
    checker = _parse(page)
    assert checker.external == []  # no scripts, no links to files or the web
    assert all(src.startswith("data:image/png;base64,") for src in checker.images)
    for src in checker.images:  # every embedded image is a real PNG
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # 3 examples per method + results, votes, curves, scatter figures
    assert len(checker.images) == 3 * len(METHODS) + 4
    text = page.read_text()
    assert "Export &lt;check&gt; &amp; &quot;quotes&quot;" in text and "<check>" not in text
    assert "<b>odd</b>" not in text and "&lt;b&gt;odd&lt;/b&gt;" in text
    assert "config hash" in text and "simulated data" in text
    for heading in ("Participants", "Results per method", "Deletion and insertion curves", "Tables"):
        assert heading in checker.headings
    assert text.count("<tr>") > 20  # summary, tests and correlation rows


def test_report_without_scores_explains_what_is_missing(tmp_path):
    folder = populate_study(tmp_path / "study")
    assert main(["report", str(folder), "--out", str(tmp_path / "out")]) == 0
    page = tmp_path / "out" / "index.html"
    checker = _parse(page)
    text = page.read_text()
    assert "No curves: run <code>camstudy score</code>" in text
    assert "Needs both analysable answers and faithfulness scores" in text
    assert len(checker.images) == 3 * len(METHODS) + 2  # examples, results, votes


def test_report_of_a_missing_study_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert "study folder not found" in capsys.readouterr().err
