"""`camstudy demo`: the whole toolkit on the embedded default, offline, in a few minutes on a laptop CPU.

The demo trades the papers' sample sizes for speed (fewer RISE masks and LIME samples, coarser
deletion/insertion steps, Score-CAM on a narrower layer) and says so in its output; everything else
is the real pipeline: explain -> score -> build -> (simulated) participants -> export -> report.
Next to EfficientNet-Lite0 it trains a tiny Attention Branch Network on `shortcut:train` (the digits with a
planted mark that stands for "0": seconds at 32 px), so the model has a shortcut whose truth is known; it
scores the ABN's own attention map next to Grad-CAM of it against the mark itself, and adds three tasks on
`shortcut:test`: the examples task, a rating of the ABN's maps, and the utility task (do explanations teach
people to predict the model?), between subjects, with the control `none`.
"""
from __future__ import annotations

import json
import shutil
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from study.resources import data_path

MARKER = ".camstudy-demo"
# Coarser than the papers' defaults so the demo fits in minutes on two cores; stated in the output.
DEMO_STEPS = 8
EXPLAINER_OPTIONS = {
    "rise": {"n_masks": 200},
    "lime": {"num_samples": 100},
    # Score-CAM's cost is one forward pass per channel: a 192-channel block of the last 7x7 stage
    # instead of the 1280-channel head keeps the method itself unchanged.
    "scorecam": {"target_layer": "network._blocks.14"},
}
# The ABN: the shortcut recipe (study.models.training.SHORTCUT_ABN), small enough to train in seconds on two
# cores. Its weight decay is the examples task's l2 in data/demo_abn.toml (influence assumes the head was
# trained with it).
ABN_METHODS = ("abn", "gradcam", "random")
# Its scores: maps of the model's decision, against the mark (relevance mass) where an image has one.
ABN_METRICS = ("deletion", "insertion", "localization", "relevance_mass_accuracy")
SIMULATED_PARTICIPANTS = 16     # four per condition of the utility task
SIMULATED_GAIN_PER_ROUND = 0.3  # the utility task's learning, on the logit scale
SIMULATED_START = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)  # their clock: reruns are byte-identical
# Per-method accuracy of the simulated participants (known, so the demo's estimates can be checked).
SIMULATED_ACCURACY = {
    "gradcam": 0.85, "gradcam++": 0.8, "ablationcam": 0.85, "scorecam": 0.8, "cam": 0.85,
    "guided_gradcam": 0.75, "guided_ablationcam": 0.75, "guided_backprop": 0.6,
    "rise": 0.7, "lime": 0.65, "random": 0.5, "influence": 0.75, "similarity": 0.65,
    "abn": 0.85, "none": 0.6,    # the utility task's conditions: test accuracy in its first round
}


@dataclass(frozen=True)
class DemoOutputs:
    study_dir: Path
    scores: Path
    export: Path
    report: Path


def settings_note() -> str:
    options = ", ".join(f"{m}: {', '.join(f'{k}={v}' for k, v in o.items())}" for m, o in EXPLAINER_OPTIONS.items())
    from study.models.training import SHORTCUT_ABN

    abn = ", ".join(f"{k}={v}" for k, v in SHORTCUT_ABN.items())
    return (f"demo settings (coarser than the papers' defaults, for speed): deletion/insertion in {DEMO_STEPS} steps "
            f"instead of 224-pixel steps; {options}; an ABN trained on shortcut:train ({abn}); "
            f"{SIMULATED_PARTICIPANTS} simulated participants (ids SIM-...)")


def demo_config() -> str:
    """data/sample_study.toml with the ABN added to its models and data/demo_abn.toml's tables after it."""
    text = data_path("sample_study.toml").read_text(encoding="utf-8")
    models = tomllib.loads(text)["models"]
    line = f"\nmodels = {json.dumps(models)}\n"
    top, tables = text.split("\n[", 1)      # top-level keys come before the first table
    if top.count(line) != 1:
        raise ValueError(f"data/sample_study.toml must name its models on one line written as {line.strip()!r}")
    top = top.replace(line, f"\nmodels = {json.dumps([*models, 'abn'])}\n")
    return top + "\n[" + tables + "\n" + data_path("demo_abn.toml").read_text(encoding="utf-8")


def run_demo(out: str | Path = "demo", *, seed: int = 0, device: str = "cpu", progress: bool = True) -> DemoOutputs:
    """Run every stage into the study folder `out`; a rerun with the same seed writes the same CSVs."""
    from study import load_model
    from study.stimuli.build import build_study
    from study.explainers import general_methods
    from study.results.export import write_exports
    from study.images.sets import bundled_images, image_set
    from study.results.report import write_report
    from study.scoring.scorer import merge_scores, score
    from study.survey.simulator import simulate_participants

    out = _fresh_folder(Path(out))
    stages = tqdm(total=7, desc="demo", unit="stage", disable=not progress)

    def stage(text: str) -> None:
        stages.set_postfix_str(text)

    stage("loading EfficientNet-Lite0 and the bundled photos")
    model = load_model(device=device)
    items = bundled_images()
    stages.update()

    stage("training a tiny Attention Branch Network on the digits with a planted shortcut")
    train_demo_abn(out / "abn.pt", seed=seed, device=device, progress=progress)
    abn = load_model("abn", weights=out / "abn.pt", device=device)
    stages.update()

    stage("explaining and scoring every method")
    scores = out / "scores"
    score(model, items, general_methods(), scores, step=_step(model), seed=seed,
          explainer_options=EXPLAINER_OPTIONS, progress=progress)
    score(abn, image_set("shortcut:test"), ABN_METHODS, scores / "abn", target="top1", step=_step(abn), seed=seed,
          metrics=ABN_METRICS, plots=False, progress=progress)
    merge_scores(scores, [scores, scores / "abn"])
    stages.update()

    stage("building the study from data/sample_study.toml and data/demo_abn.toml")
    config = out / "study.toml"
    config.write_text(demo_config(), encoding="utf-8")
    build_study(config, out, progress=progress)
    stages.update()

    stage("simulated participants")
    simulate_participants(out, SIMULATED_PARTICIPANTS, SIMULATED_ACCURACY, seed=seed, start=SIMULATED_START,
                          gain_per_round=SIMULATED_GAIN_PER_ROUND)
    stages.update()

    stage("exporting CSVs")
    export = out / "export"
    write_exports(out, export)
    stages.update()

    stage("writing the report")
    report = write_report(out, out / "report")
    stages.update()
    stages.close()
    return DemoOutputs(out, scores, export, report)


def train_demo_abn(path: Path, *, seed: int, device: str, progress: bool) -> None:
    """The demo's ABN, trained on shortcut:train by the shortcut recipe (`SHORTCUT_ABN`) and written to `path` as
    `camstudy train-abn` writes it, so the study loads it by name (`[weights] abn = "abn.pt"`)."""
    import torch

    from study.models import IMAGENET_MEAN, IMAGENET_STD, AttentionBranchNetwork
    from study.models.training import SHORTCUT_ABN, labelled_dataset, train_abn

    recipe = SHORTCUT_ABN
    size = recipe["size"]
    dataset, classes = labelled_dataset("shortcut:train", size, IMAGENET_MEAN, IMAGENET_STD)
    with torch.random.fork_rng():       # the initial weights come from the seed too, not from the global state
        torch.manual_seed(seed)
        net = AttentionBranchNetwork.from_backbone(recipe["backbone"], len(classes))
    meta = {"categories": classes, "input_size": [size, size], "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    train_abn(net, dataset, epochs=recipe["epochs"], batch_size=recipe["batch_size"], lr=recipe["lr"],
              weight_decay=recipe["weight_decay"], device=device, seed=seed, checkpoint=path, meta=meta,
              progress=progress)


def _step(model) -> int:
    """Pixels per deletion/insertion step: DEMO_STEPS steps over the model's input."""
    return -(-model.input_size[0] * model.input_size[1] // DEMO_STEPS)


def _fresh_folder(out: Path) -> Path:
    """`out`, emptied if an earlier demo made it; never touches a folder the demo did not create."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ValueError(f"{out} exists and is not an earlier demo's folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by camstudy demo; a rerun replaces this folder\n")
    return out.resolve()
