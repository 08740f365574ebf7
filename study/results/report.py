"""`camstudy report`: one self-contained HTML page about a study.

Everything is inside DIR/index.html: figures are matplotlib PNGs and stimulus examples are the
study's own PNGs, both embedded as base64; the style sheet is inline; there is no JavaScript.
Every piece of text that comes from the config, the database or the score files passes through
`html.escape`. The numbers are the export's (study.results.export.tables_from_records), so the page and
the CSVs cannot disagree.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image as PILImage

from study.results import analysis
from study.results.export import StudyRecords, find_scores, load_study, read_faithfulness, tables_from_records
from study.scoring.figures import COLOURS, curves_figure
from study.store.identity import SIM_PREFIX
from study.scoring.catalog import BY_NAME, label
from study.scoring.files import CURVE_COLUMNS, CURVES_FILE

EXAMPLES_PER_METHOD = 3
THUMBNAIL_PX = 180
# What the scatter plots show first when there are more measures and metrics than panels.
PREFERRED_HUMAN = ("rating", "compare_preferred", "class_discrimination_accuracy", "trust")
PREFERRED_METRICS = ("insertion_auc", "deletion_auc", "pointing_game", "energy_pointing_game")
# Fixed axis ranges (padded so points on the ends stay visible) for measures with a known scale.
SCALES = {"accuracy": (-.03, 1.03), "preferred": (-.03, 1.03), "rating": (.9, 5.1), "trust": (-2.1, 2.1)}
ROUND_PREFIX = "accuracy_round_"     # summary.csv measures of the utility task's learning curve

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1f2328; max-width: 980px; margin: 2.5rem auto; padding: 0 1.25rem; line-height: 1.5; }
h1 { font-size: 1.9rem; margin-bottom: .2rem; }
h2 { font-size: 1.3rem; margin-top: 2.4rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
h3 { font-size: 1.05rem; margin-bottom: .4rem; }
p.meta, p.note { color: #57606a; font-size: .92rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .88em;
       background: #f6f8fa; padding: .1em .3em; border-radius: 4px; }
table { border-collapse: collapse; font-size: .86rem; margin: .6rem 0 1rem; width: 100%; }
th, td { padding: .3rem .55rem; border-bottom: 1px solid #e5e7eb; text-align: left; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fbfbfc; }
.badge { display: inline-block; background: #fff4d6; color: #7a5200; border: 1px solid #f0d58c;
         border-radius: 999px; padding: .05rem .6rem; font-size: .82rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; }
.examples { display: flex; flex-wrap: wrap; gap: .6rem; }
.examples figure { margin: 0; width: 180px; }
.examples figcaption { font-size: .78rem; color: #57606a; }
"""


def write_report(study_dir: str | Path, out: str | Path, *, scores_dir: str | Path | None = None) -> Path:
    """Write `out`/index.html for the study in `study_dir`; returns its path.

    Faithfulness scores and curves are looked up as in study.results.export.export_tables."""
    folder = Path(study_dir)
    records = load_study(folder)
    scores = find_scores(folder, scores_dir)
    tables = tables_from_records(records, read_faithfulness(scores))
    page = render_report(records, tables, read_curves(scores), folder)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def read_curves(scores: Path | None) -> pd.DataFrame:
    """Mean deletion / insertion curves that `camstudy score` wrote next to faithfulness.csv
    (curves.csv: model, method, curve, fraction, value), or an empty frame when there are none."""
    path = None if scores is None else scores / CURVES_FILE
    if path is None or not path.is_file():
        return pd.DataFrame(columns=CURVE_COLUMNS)
    frame = pd.read_csv(path)
    missing = set(CURVE_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}; expected {CURVE_COLUMNS}")
    return frame


def render_report(records: StudyRecords, tables: dict[str, pd.DataFrame], curves: pd.DataFrame,
                  study_dir: Path) -> str:
    """The whole page as one HTML string."""
    summary = tables["summary"]
    sections = [
        _header(records),
        _participants_section(tables["participants"]),
        _examples_section(records, study_dir),
        _results_section(summary[~summary["measure"].str.startswith(ROUND_PREFIX)]),
        _utility_section(summary, tables["tests"]),
        _votes_section(summary),
        _mixed_section(tables["tests"]),
        _curves_section(curves),
        _scatter_section(tables["responses"], tables["faithfulness"]),
        _tables_section(tables),
    ]
    title = html.escape(records.config.name)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title} — camstudy report</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(sections) + "\n</body>\n</html>\n")


# --- sections ---------------------------------------------------------------------------------


def _header(records: StudyRecords) -> str:
    return (f"<h1>{html.escape(records.config.name)}</h1>\n"
            f"<p class=\"meta\">Study version {records.study_id} · config hash <code>{html.escape(records.config_hash)}</code>"
            f" · models {html.escape(', '.join(records.config.models))}</p>")


def _participants_section(people: pd.DataFrame) -> str:
    simulated = people["external_id"].astype(str).str.startswith(SIM_PREFIX)
    excluded = people["excluded"].astype(bool)
    failed = ~people["attention_passed"].astype(bool)
    incomplete = people["completed_at"].isna()
    counts = [
        ("Entered", len(people)), ("Completed", int((~incomplete).sum())),
        ("Included in the analysis", int((~excluded).sum())), ("Excluded", int(excluded.sum())),
        ("… failed attention checks", int(failed.sum())), ("… did not complete", int(incomplete.sum())),
        (f"Simulated (external id {SIM_PREFIX}…)", int(simulated.sum())),
    ]
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td class=\"num\">{n}</td></tr>" for label, n in counts)
    badge = ""
    if simulated.any():
        badge = (f"<p><span class=\"badge\">simulated data</span> {int(simulated.sum())} of {len(people)} "
                 "participants are simulated (seeded answers with known per-method accuracy); "
                 "they are included in the results below.</p>")
    return (f"<h2>Participants</h2>\n{badge}<table><tbody>{rows}</tbody></table>\n"
            "<p class=\"note\">Exclusions are flags, never deletions: a participant is excluded after too many "
            "wrong attention checks or without completing; an answer faster than the config's "
            "<code>exclusion.min_rt_ms</code> is excluded on its own.</p>")


def _examples_section(records: StudyRecords, study_dir: Path) -> str:
    """A few stimuli per method (and model, when the study has several), the same images across methods
    where possible, so they compare. The examples task's pictures appear under its methods."""
    stimuli = records.stimuli[[(Path(study_dir) / p).is_file() for p in records.stimuli["path"]]]
    if stimuli.empty:
        return "<h2>Stimulus examples</h2>\n<p class=\"note\">No stimulus images found in the study folder.</p>"
    coverage = stimuli.groupby("image_id")["method"].nunique()
    preferred = sorted(coverage.index, key=lambda image: (-coverage[image], image))
    rank = {image: i for i, image in enumerate(preferred)}
    blocks = []
    several = stimuli["model"].nunique() > 1
    for (method, model), group in stimuli.groupby(["method", "model"], sort=True):
        title = f"{method} ({model})" if several else method
        chosen = (group.assign(rank=group["image_id"].map(rank)).sort_values(["rank", "path"], kind="stable")
                  .drop_duplicates("image_id").head(EXAMPLES_PER_METHOD))
        figures = "".join(f"<figure><img alt=\"{html.escape(row.image_id)}\" src=\"{_thumbnail(Path(study_dir) / row.path)}\">"
                          f"<figcaption>{html.escape(row.image_id)}</figcaption></figure>" for row in chosen.itertuples())
        blocks.append(f"<h3>{html.escape(title)}</h3><div class=\"examples\">{figures}</div>")
    return "<h2>Stimulus examples</h2>\n" + "\n".join(blocks)


def _results_section(summary: pd.DataFrame) -> str:
    parts = ["<h2>Results per method</h2>",
             "<p class=\"note\">Points are estimates, bars 95% intervals: Wilson score intervals for "
             "proportions (accuracy, how often a method was preferred), a bootstrap over participants "
             "for means (ratings, trust, confidence). Trust runs from -2 to +2; positive values favour "
             "the model named in the row over the task's second model.</p>"]
    panels = list(summary.groupby(["task", "measure"], sort=True))
    if not panels:
        return "\n".join(parts + ["<p class=\"note\">No analysable answers yet.</p>"])
    heights = [0.9 + 0.38 * len(rows) for _, rows in panels]
    figure = Figure(figsize=(8.6, sum(heights)), layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, ((task, measure), rows) in zip(axes, panels):
        labels = [m if rows["model"].nunique() == 1 else f"{m} ({mod})" for m, mod in zip(rows["method"], rows["model"])]
        y = np.arange(len(rows))
        est = rows["estimate"].to_numpy(float)
        err = np.vstack([est - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - est])
        ax.errorbar(est, y, xerr=err, fmt="o", color=COLOURS[0], ecolor="#8c959f", capsize=4)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_title(f"{task}: {measure}", loc="left", fontsize=10)
        if measure in SCALES:
            ax.set_xlim(*SCALES[measure])
        if measure == "trust":
            ax.axvline(0, color="#8c959f", linewidth=.8)
        ax.grid(axis="x", alpha=.3)
    parts.append(_figure_html(figure, "Per-method estimates with 95% intervals"))
    return "\n".join(parts)


def _utility_section(summary: pd.DataFrame, tests: pd.DataFrame) -> str:
    """Did explanations teach people how the model decides? Learning curves (test accuracy by round, per
    condition, Wilson intervals) and each method's utility over the control with its bootstrap interval,
    overall and on the model's mistakes. Nothing when the study has no utility task."""
    curves = summary[(summary["task"] == "utility") & summary["measure"].str.startswith(ROUND_PREFIX)]
    gains = tests[tests["test"] == "utility"]
    if curves.empty:
        return ""
    figure = Figure(figsize=(8.6, 3.4), layout="constrained")
    left, right = figure.subplots(1, 2)
    # A study with utility tasks on two models draws a curve per model and condition, each named by both.
    several = curves["model"].fillna("").nunique() > 1
    named = (lambda model, method: f"{method} ({model})") if several else (lambda model, method: method)
    for i, ((model, method), rows) in enumerate(curves.groupby([curves["model"].fillna(""), "method"], sort=True)):
        rounds = rows["measure"].str.removeprefix(ROUND_PREFIX).astype(int).to_numpy()
        est = rows["estimate"].to_numpy(float)
        err = np.clip([est - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - est], 0, None)
        left.errorbar(rounds + 0.06 * (i - 1), est, yerr=err, fmt="o-", capsize=3, label=named(model, method),
                      color=COLOURS[i % len(COLOURS)])
    left.set_xlabel("round")
    left.set_ylabel("test accuracy (predicting the model)")
    left.set_ylim(-.03, 1.03)
    left.set_xticks(sorted(set(curves["measure"].str.removeprefix(ROUND_PREFIX).astype(int))))
    left.legend(fontsize=8)
    left.grid(alpha=.3)
    left.set_title("learning curves", loc="left", fontsize=10)
    shown = gains[gains["measure"].isin(["accuracy", "accuracy_model_wrong"])]
    labels = [f"{named(model, m)} ({'model wrong' if measure == 'accuracy_model_wrong' else 'all'})"
              for model, m, measure in zip(shown["model"].fillna(""), shown["method_a"], shown["measure"])]
    y = np.arange(len(shown))
    est = shown["estimate"].to_numpy(float)
    err = np.clip([est - shown["ci_low"].to_numpy(float), shown["ci_high"].to_numpy(float) - est], 0, None)
    right.errorbar(est, y, xerr=err, fmt="o", color=COLOURS[0], ecolor="#8c959f", capsize=4)
    right.axvline(0, color="#8c959f", linewidth=.8)
    right.set_yticks(y, labels)
    right.invert_yaxis()
    right.set_xlabel("utility: (acc_m - acc_none) / acc_none")
    right.grid(axis="x", alpha=.3)
    right.set_title("utility over the control", loc="left", fontsize=10)
    note = ("<p class=\"note\">Colin, Fel et al. (NeurIPS 2022): participants learn from images with the model's "
            "decision and, unless their condition is <code>none</code>, a method's map; then they predict the "
            "model's decision on new images without any map. Utility is the relative gain in that accuracy over "
            "the control; intervals resample participants within each condition (tests.csv, <code>test = "
            "utility</code>). The mixed logit <code>correct ~ condition + round + (1|participant) + (1|image)</code> "
            "is in the table of mixed models.</p>")
    return "\n".join(["<h2>Do explanations help people predict the model?</h2>", note,
                      _figure_html(figure, "Learning curves per condition and utility per method")])


def _votes_section(summary: pd.DataFrame) -> str:
    votes = summary[summary["vote_score"].notna()]
    head = "<h2>Compare: normalised vote scores</h2>"
    if votes.empty:
        return head + "\n<p class=\"note\">The study has no compare answers yet.</p>"
    figure = Figure(figsize=(6.5, 0.5 + 0.45 * len(votes)), layout="constrained")
    ax = figure.subplots()
    y = np.arange(len(votes))
    ax.barh(y, votes["vote_score"].to_numpy(float), color=[COLOURS[i % len(COLOURS)] for i in range(len(votes))])
    ax.set_yticks(y, votes["method"].tolist())
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("vote score (share of votes per image pair, averaged over pairs)")
    note = ("<p class=\"note\">Ablation-CAM 6.3: each image pair's answers are normalised to sum to one; a "
            "method's score is its mean share over the pairs it appears in (see "
            "<code>study.results.analysis.vote_scores</code>); the rest is the share of \"about the same\".</p>")
    return "\n".join([head, note, _figure_html(figure, "Vote scores")])


def _mixed_section(tests: pd.DataFrame) -> str:
    """The mixed models' contrasts (tests.csv rows mixed_logit / mixed_linear) and any singular fit."""
    head = "<h2>Mixed-effects models</h2>"
    contrasts = tests[tests["test"].isin(["mixed_logit", "mixed_linear"])]
    if contrasts.empty:
        return head + "\n<p class=\"note\">No task has answers under two or more methods yet.</p>"
    table = pd.DataFrame({
        "task": contrasts["task"], "model": contrasts["model"], "measure": contrasts["measure"],
        "method": contrasts["method_a"], "against": contrasts["method_b"], "model type": contrasts["test"],
        "estimate": contrasts["estimate"], "SE": contrasts["se"], "95% low": contrasts["ci_low"],
        "95% high": contrasts["ci_high"], "odds ratio": contrasts["statistic"].where(contrasts["test"] == "mixed_logit"),
        "p": contrasts["p"], "n": contrasts["n"]})
    sds = tests[tests["test"].str.endswith("_sd") & (tests["paired_by"] != "residual")]
    singular = sds[sds["estimate"] == 0]
    notes = ["<p class=\"note\">Each method against the reference (the config's first method), with random "
             "intercepts for participants and images: <code>outcome ~ method + (1|participant) + (1|image)</code>. "
             "Accuracy and compare preference: logistic (estimates in log-odds; Laplace maximum likelihood, as "
             "lme4's glmer); ratings, trust and confidence: linear (scale points; REML, as lmer). Wald tests and "
             "intervals. <code>analysis.R</code> in the export refits them with lme4.</p>"]
    if len(singular):
        fits = sorted({f"{r.task} {r.measure} ({r.paired_by})" for r in singular.itertuples()})
        notes.append("<p class=\"note\">Singular fits (a random-intercept SD estimated as 0): "
                     + html.escape(", ".join(fits)) + ".</p>")
    return "\n".join([head, *notes, _table_html(table.reset_index(drop=True))])


def _curves_section(curves: pd.DataFrame) -> str:
    head = "<h2>Deletion and insertion curves</h2>"
    if curves.empty:
        return (head + "\n<p class=\"note\">No curves: run <code>camstudy score</code> on the study to add "
                "faithfulness scores and mean deletion/insertion curves to this report.</p>")
    return "\n".join([head, "<p class=\"note\">Mean over images per method (RISE causal metric).</p>",
                      _figure_html(curves_figure(curves), "Deletion and insertion curves")])


def _scatter_section(responses: pd.DataFrame, faithfulness: pd.DataFrame) -> str:
    head = "<h2>Human judgements vs faithfulness</h2>"
    human = analysis.human_per_image(analysis.analysable(responses))
    if human.empty or faithfulness.empty:
        return head + "\n<p class=\"note\">Needs both analysable answers and faithfulness scores (<code>camstudy score</code>).</p>"
    faith = (faithfulness.assign(value=faithfulness["value"].astype(float))
             .groupby(["model", "method", "image_id", "metric"], as_index=False)["value"].mean())
    joined = human.merge(faith, on=["model", "method", "image_id"])
    if joined.empty:
        return head + "\n<p class=\"note\">No image was both judged and scored under the same method.</p>"
    humans = _preferred(joined["human_measure"], PREFERRED_HUMAN)[:2]
    metrics = _preferred(joined["metric"], PREFERRED_METRICS)[:2]
    groups = dict(list(joined.groupby(["human_measure", "metric"], sort=True)))
    pairs = [((h, m), groups[(h, m)]) for h in humans for m in metrics if (h, m) in groups]
    columns = min(2, len(pairs))
    n_rows = -(-len(pairs) // columns)
    figure = Figure(figsize=(3.3 * columns, 3.0 * n_rows), layout="constrained")
    axes = figure.subplots(n_rows, columns, squeeze=False).ravel()
    methods = sorted(joined["method"].unique())
    for ax, ((measure, metric), rows) in zip(axes, pairs):
        for i, method in enumerate(methods):
            points = rows[rows["method"] == method]
            ax.scatter(points["value"], points["human"], s=18, label=method, color=COLOURS[i % len(COLOURS)])
        ax.set_xlabel(label(metric), fontsize=9)
        ax.set_ylabel(measure, fontsize=9)
        ax.grid(alpha=.3)
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    return "\n".join([head, "<p class=\"note\">One point per image and method: the mean human measure against "
                            "the faithfulness metric. Spearman correlations are in the table below.</p>",
                      _figure_html(figure, "Human measures against faithfulness metrics")])


def _tables_section(tables: dict[str, pd.DataFrame]) -> str:
    parts = ["<h2>Tables</h2>", "<h3>Faithfulness metrics (faithfulness.csv), mean per method</h3>"]
    means = metric_means(tables["faithfulness"])
    parts.append(_table_html(means) if len(means) else "<p class=\"note\">No faithfulness scores.</p>")
    for name, title in (("summary", "Summary (summary.csv)"), ("tests", "Statistical tests (tests.csv)"),
                        ("correlations", "Correlations with faithfulness (correlations.csv)")):
        frame = tables[name]
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(_table_html(frame) if len(frame) else "<p class=\"note\">Empty.</p>")
    return "\n".join(parts)


def metric_means(faithfulness: pd.DataFrame) -> pd.DataFrame:
    """Mean of every metric present per model and method, one column per metric labelled with its
    direction (study.scoring.catalog); catalog metrics in catalog order, others after them by name."""
    if faithfulness.empty:
        return pd.DataFrame()
    values = faithfulness.assign(value=faithfulness["value"].astype(float))
    wide = values.pivot_table(index=["model", "method"], columns="metric", values="value", aggfunc="mean")
    order = [m for m in BY_NAME if m in wide.columns] + sorted(set(wide.columns) - set(BY_NAME))
    return wide[order].rename(columns=label).reset_index()


# --- helpers ----------------------------------------------------------------------------------


def _preferred(names: pd.Series, order: tuple[str, ...]) -> list[str]:
    """The distinct names, those listed in `order` first (in that order), then the rest sorted."""
    present = set(names.astype(str))
    return [n for n in order if n in present] + sorted(present - set(order))


def _table_html(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            if isinstance(value, (float, np.floating)):
                cells.append(f"<td class=\"num\">{'' if np.isnan(value) else f'{value:.3g}'}</td>")
            elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                cells.append(f"<td class=\"num\">{value}</td>")
            else:
                cells.append(f"<td>{'' if pd.isna(value) else html.escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure_html(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<figure><img alt=\"{html.escape(alt)}\" src=\"data:image/png;base64,{data}\"></figure>"


def _thumbnail(path: Path) -> str:
    with PILImage.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
