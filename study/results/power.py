"""Power of a planned study's accuracy analysis, by simulation in memory.

A study answers "is there a method effect on accuracy?" with the mixed logit of the analysis,

    logit P(correct) = beta_method + b_participant - d_image,
    b_participant ~ N(0, participant_sd²), d_image ~ N(0, image_sd²),

so its power is estimated the same way: draw many studies of the planned design from this model
(the planned per-method accuracies are those of a typical participant on a typical image,
expit(beta_method)), fit each with `study.results.mixed.fit_logit` (Laplace maximum likelihood) and count
how often the Wald test of the method effect rejects at `alpha`: the z test of the contrast for
two methods, the Wald chi-square test of all k - 1 contrasts against the reference for more.
Who sees what follows the build's plans (study.protocol.plans): within, participant s sees the images of
Latin-square slot s, every method on different images; between, participant s sees every image
of the slot under method s mod k.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats
from scipy.special import expit, logit

from study.results import mixed
from study.scoring.figures import COLOURS
from study.protocol import plans
from study.results.analysis import wilson_interval
from study.protocol.tasks import TASKS

DESIGNS = ("within", "between")
POWER_FILE = "power.csv"              # what `camstudy power --out DIR` writes
POWER_PLOT = "power.png"
POWER_COLUMNS = ["participants", "power", "ci_low", "ci_high"]


@dataclass(frozen=True)
class PowerPlan:
    """What is planned: methods and their accuracy for a typical participant and image, the
    random-effect SDs (logit scale), the task's images, how many each participant sees, design."""

    methods: tuple[str, ...]
    accuracy: tuple[float, ...]
    participant_sd: float = 0.5
    image_sd: float = 0.5
    images: int = 8
    per_participant: int = 8
    design: str = "within"

    def __post_init__(self):
        if len(self.methods) < 2 or len(self.methods) != len(self.accuracy):
            raise ValueError(f"a power analysis needs an accuracy for each of at least two methods, got {dict(zip(self.methods, self.accuracy))}")
        if not all(0 < p < 1 for p in self.accuracy):
            raise ValueError(f"planned accuracies must be strictly between 0 and 1, got {list(self.accuracy)}")
        if self.participant_sd < 0 or self.image_sd < 0:
            raise ValueError(f"random-effect SDs must be >= 0, got {self.participant_sd} and {self.image_sd}")
        if self.design not in DESIGNS:
            raise ValueError(f"design must be one of {', '.join(DESIGNS)}, got {self.design!r}")
        if not 1 <= self.per_participant <= self.images:
            raise ValueError(f"each participant sees 1 to {self.images} images, got {self.per_participant}")


def layout(plan: PowerPlan, n_participants: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(participant, image, method) index of every answer of the planned study."""
    k, m = len(plan.methods), plan.per_participant
    rows = []
    for s in range(n_participants):
        if plan.design == "within":
            rows += [(s, *plans.cell(j, plan.images, k)) for j in plans.slot_cells(s, plan.images, k, m)]
        else:
            rows += [(s, j % plan.images, s % k) for j in plans.slot_cells(s, plan.images, 1, m)]
    return tuple(np.array(column, dtype=np.intp) for column in zip(*rows))


def simulate_correct(plan: PowerPlan, n_participants: int, n_studies: int, rng: np.random.Generator) -> np.ndarray:
    """Correct (1) / wrong (0) answers of `n_studies` simulated studies, [n_studies, answers]."""
    person, image, method = layout(plan, n_participants)
    ability = rng.normal(0.0, plan.participant_sd, (n_studies, n_participants))
    difficulty = rng.normal(0.0, plan.image_sd, (n_studies, plan.images))
    eta = logit(np.asarray(plan.accuracy))[method] + ability[:, person] - difficulty[:, image]
    return (rng.random(eta.shape) < expit(eta)).astype(float)


def method_effect_p(fit: mixed.MixedFit) -> float:
    """p of the Wald test that every method contrast (all terms but the intercept) is zero."""
    beta, cov = fit.beta[1:], fit.cov[1:, 1:]
    try:
        statistic = float(beta @ np.linalg.solve(cov, beta))
    except np.linalg.LinAlgError:
        return float("nan")
    return float(stats.chi2.sf(statistic, beta.size)) if statistic >= 0 else float("nan")


def _rejections(args) -> np.ndarray:
    """Whether each simulated study's test rejects (a failed fit counts as no rejection)."""
    plan, n_participants, answers, alpha = args
    person, image, method = layout(plan, n_participants)
    groups = mixed.Crossed({"participant": person, "image": image})
    X, terms = mixed.treatment_design(np.asarray(plan.methods)[method], list(plan.methods))
    with _one_thread():
        p = np.array([method_effect_p(mixed.fit_logit(y, X, groups, terms)) for y in answers])
    return p < alpha


def power_curve(plan: PowerPlan, participants, simulations: int = 400, *, alpha: float = 0.05,
                seed: int = 0, workers: int | None = None) -> pd.DataFrame:
    """power.csv: per number of participants, the share of simulated studies whose test rejects,
    with a Wilson 95% interval for that share (simulation error). Seeded; the result does not
    depend on `workers` (processes; default: one per CPU)."""
    participants = [int(n) for n in participants]
    if not participants or min(participants) < 2:
        raise ValueError(f"numbers of participants must be at least 2, got {participants}")
    if simulations < 1 or not 0 < alpha < 1:
        raise ValueError(f"need simulations >= 1 and 0 < alpha < 1, got {simulations} and {alpha}")
    workers = workers or os.cpu_count() or 1
    rng = np.random.default_rng(seed)
    rows = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for n in participants:
            answers = simulate_correct(plan, n, simulations, rng)
            chunks = [(plan, n, chunk, alpha) for chunk in np.array_split(answers, workers) if len(chunk)]
            rejected = int(sum(r.sum() for r in pool.map(_rejections, chunks)))
            low, high = wilson_interval(rejected, simulations)
            rows.append([n, rejected / simulations, low, high])
    return pd.DataFrame(rows, columns=POWER_COLUMNS)


def accuracy_task(config, task_type: str | None = None):
    """The config's task to plan for: the first scored right/wrong (accuracy; a utility task's test
    answers are), or the one named."""
    scored = [t for t in config.tasks if t.type == "utility" or any(m.column == "correct" for m in TASKS[t.type].measures)]
    chosen = [t for t in scored if task_type in (None, t.type)]
    if not chosen:
        names = ", ".join(t.type for t in scored) or "none"
        raise ValueError(f"no task {task_type or 'scored right/wrong'} in the config to plan for (accuracy tasks: {names})")
    return chosen[0]


def utility_plan(task, utility: float, control_accuracy: float, *, participant_sd: float, image_sd: float,
                 images: int | None = None) -> PowerPlan:
    """The plan of a utility task's test: the control `none` at `control_accuracy` against an explanation
    method whose participants predict the model `utility` better, acc_none * (1 + utility), between subjects;
    each participant answers rounds x test test trials (of `images`, default as many: the same images for
    everyone). The mixed logit's condition contrast is the test; a learning gain that both conditions share
    cancels in it and is left out."""
    options = task.options
    per_participant = options.rounds * options.test
    method = next(m for m in task.methods if m != "none")
    return PowerPlan(("none", method), (control_accuracy, control_accuracy * (1 + utility)), participant_sd, image_sd,
                     images=images or per_participant, per_participant=per_participant, design="between")


def plan_from_pilot(study_dir: str | Path, task: str, methods, **layout_fields) -> PowerPlan:
    """A plan whose accuracies and random-effect SDs are the mixed logit's estimates on a pilot
    study's analysable answers to `task` (accuracy of a typical participant and image,
    expit(intercept + contrast)). `layout_fields`: images, per_participant, design."""
    from study.results.analysis import analysable, flag_exclusions
    from study.results.export import load_study

    records = load_study(study_dir)
    exclusion = records.config.exclusion
    responses, _ = flag_exclusions(records.responses, records.participants, min_rt_ms=exclusion.min_rt_ms,
                                   max_failed_attention_checks=exclusion.max_failed_attention_checks)
    rows = analysable(responses)
    rows = rows[(rows["task"] == task) & rows["correct"].notna() & rows["method"].isin(methods)]
    missing = sorted(set(methods) - set(rows["method"]))
    if missing:
        raise ValueError(f"the pilot study {study_dir} has no analysable {task} answers for {', '.join(missing)}")
    groups = mixed.Crossed({"participant": mixed.codes_of(rows["participant_id"]), "image": mixed.codes_of(rows["image_id"])})
    X, terms = mixed.treatment_design(rows["method"], list(methods))
    fit = mixed.fit_logit(rows["correct"].astype(float).to_numpy(), X, groups, terms, with_cov=False)
    logits = fit.beta[0] + np.concatenate([[0.0], fit.beta[1:]])
    return PowerPlan(tuple(methods), tuple(float(p) for p in expit(logits)), fit.sd["participant"],
                     fit.sd["image"], **layout_fields)


def _one_thread():
    """One BLAS thread per process: the fits are small, and the processes share the cores."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def power_figure(power: pd.DataFrame, target: float = 0.8) -> Figure:
    """Power against the number of participants (power.csv rows), with the simulation's 95%
    intervals and a line at the `target` power."""
    figure = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = figure.subplots()
    n = power["participants"].to_numpy(float)
    estimate = power["power"].to_numpy(float)
    # clipped: a Wilson end can fall a rounding error inside an estimate of exactly 0 or 1
    errors = np.clip([estimate - power["ci_low"].to_numpy(float), power["ci_high"].to_numpy(float) - estimate], 0, None)
    ax.errorbar(n, estimate, yerr=errors, fmt="o-", color=COLOURS[0], ecolor="#8c959f", capsize=4)
    ax.axhline(target, color=COLOURS[1], linewidth=.8, linestyle="--", label=f"{target:.0%} power")
    ax.set_xlabel("participants")
    ax.set_ylabel("power (share of simulated studies rejecting)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=.3)
    ax.legend(fontsize=8, loc="lower right")
    return figure
