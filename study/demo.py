"""`camstudy demo`: the whole toolkit on the embedded default, offline, in a few minutes on a laptop CPU.

The demo trades the papers' sample sizes for speed (fewer RISE masks and LIME samples, coarser
deletion/insertion steps, Score-CAM on a narrower layer) and says so in its output; everything else
is the real pipeline: explain -> score -> build -> (simulated) participants -> export -> report.
"""
from __future__ import annotations

import shutil
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
SIMULATED_PARTICIPANTS = 8
SIMULATED_START = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)  # their clock: reruns are byte-identical
# Per-method accuracy of the simulated participants (known, so the demo's estimates can be checked).
SIMULATED_ACCURACY = {
    "gradcam": 0.85, "gradcam++": 0.8, "ablationcam": 0.85, "scorecam": 0.8, "cam": 0.85,
    "guided_gradcam": 0.75, "guided_ablationcam": 0.75, "guided_backprop": 0.6,
    "rise": 0.7, "lime": 0.65, "random": 0.4,
}


@dataclass(frozen=True)
class DemoOutputs:
    study_dir: Path
    scores: Path
    export: Path
    report: Path


def settings_note() -> str:
    options = ", ".join(f"{m}: {', '.join(f'{k}={v}' for k, v in o.items())}" for m, o in EXPLAINER_OPTIONS.items())
    return (f"demo settings (coarser than the papers' defaults, for speed): deletion/insertion in {DEMO_STEPS} steps "
            f"instead of 224-pixel steps; {options}; {SIMULATED_PARTICIPANTS} simulated participants (ids SIM-...)")


def run_demo(out: str | Path = "demo", *, seed: int = 0, device: str = "cpu", progress: bool = True) -> DemoOutputs:
    """Run every stage into the study folder `out`; a rerun with the same seed writes the same CSVs."""
    from study import load_model
    from study.build import build_study
    from study.explainers import general_methods
    from study.export import write_exports
    from study.images import bundled_images
    from study.report import write_report
    from study.scoring import score
    from study.simulate import simulate_participants

    out = _fresh_folder(Path(out))
    stages = tqdm(total=6, desc="demo", unit="stage", disable=not progress)

    def stage(text: str) -> None:
        stages.set_postfix_str(text)

    stage("loading EfficientNet-Lite0 and the bundled photos")
    model = load_model(device=device)
    items = bundled_images()
    stages.update()

    stage("explaining and scoring every method")
    scores = out / "scores"
    pixels = model.input_size[0] * model.input_size[1]
    score(model, items, general_methods(), scores, step=-(-pixels // DEMO_STEPS), seed=seed,
          explainer_options=EXPLAINER_OPTIONS, progress=progress)
    stages.update()

    stage("building the study from data/example_study.toml")
    config = out / "study.toml"
    shutil.copyfile(data_path("example_study.toml"), config)
    build_study(config, out, progress=progress)
    stages.update()

    stage("simulated participants")
    simulate_participants(out, SIMULATED_PARTICIPANTS, SIMULATED_ACCURACY, seed=seed, start=SIMULATED_START)
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


def _fresh_folder(out: Path) -> Path:
    """`out`, emptied if an earlier demo made it; never touches a folder the demo did not create."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ValueError(f"{out} exists and is not an earlier demo's folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by camstudy demo; a rerun replaces this folder\n")
    return out.resolve()
