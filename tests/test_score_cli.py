"""`camstudy score` and `study.scoring.scorer.score`: CSV schema, plots, cache, errors."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from _metrics_fixtures import write_voc_set
from study.cli import main

TINY = "_metrics_fixtures:score_test_network"
COLUMNS = ["image_id", "model", "method", "target_class", "metric", "value", "params"]


def _refuse(*args, **kwargs):
    raise AssertionError("a cached rerun must not recompute")


def test_score_cli_writes_the_csv_and_plots_and_reruns_from_the_cache(tmp_path, monkeypatch, capsys):
    images, annotations = write_voc_set(tmp_path / "voc")
    out = tmp_path / "scores"
    argv = ["score", "--model", TINY, "--weights", "random", "--images", f"voc:{images}:{annotations}",
            "--methods", "gradcam,random", "--step", "6272", "--out", str(out)]
    assert main(argv) == 0
    table = pd.read_csv(out / "faithfulness.csv")
    assert list(table.columns) == COLUMNS
    assert set(table["method"]) == {"gradcam", "random"} and set(table["image_id"]) == {"img0", "img1"}
    expected_metrics = {"deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence",
                        "pointing_game", "energy_pointing_game", "box_localization", "box_iou"}
    assert set(table["metric"]) == expected_metrics
    assert len(table) == 2 * 2 * len(expected_metrics)
    assert (table["target_class"] == 281).all()  # VOC name "tabby" is ImageNet class 281
    deletion = table[table["metric"] == "deletion_auc"]
    assert deletion["value"].between(0, 1).all()
    assert {json.loads(p)["step"] for p in deletion["params"]} == {6272}
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves["curve"]) == {"deletion", "insertion"} and curves["fraction"].max() == 1.0
    assert len(curves) == 2 * 2 * 9  # methods x curves x (n + 1) points, n = 50176 / 6272
    for png in ("curves.png", "metrics_table.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.width > 300
    first = (out / "faithfulness.csv").read_text()
    assert "deletion_auc" in capsys.readouterr().out

    monkeypatch.setattr("study.scoring.scorer.explain", _refuse)
    monkeypatch.setattr("metrics.causal_curves", _refuse)
    assert main(argv) == 0
    assert (out / "faithfulness.csv").read_text() == first


def test_unknown_method_exits_2_with_one_line(tmp_path, capsys):
    assert main(["score", "--methods", "gradcam,nosuchmethod", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nosuchmethod" in err and err.startswith("camstudy score: error:")


def test_bad_option_exits_2(tmp_path, capsys):
    assert main(["score", "--model", TINY, "--weights", "random", "--option", "rise=3",
                 "--methods", "random", "--out", str(tmp_path)]) == 2
    assert "METHOD.KEY=VALUE" in capsys.readouterr().err


def test_misspelt_option_exits_2_naming_the_valid_ones_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("study.load_model", _refuse)
    monkeypatch.setattr("study.images.sets.image_set", _refuse)
    assert main(["score", "--option", "rise.n_mask=5", "--methods", "rise,gradcam", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("camstudy score: error:")
    assert "n_mask" in err and "valid options: grid, n_masks, p" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("option", ["rise.batch_size=5", "rise.seed=1"])
def test_an_option_score_sets_itself_exits_2_in_one_line(option, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("study.load_model", _refuse)
    assert main(["score", "--option", option, "--methods", "rise", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "set by score itself" in err


def _tiny_classifier():
    from study import load_model

    return load_model(TINY, weights="random")


def _items():
    from study.images import ImageItem

    rng = np.random.default_rng(1)
    photo = lambda: Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))  # noqa: E731
    return [
        ImageItem("boxed", photo(), labels=(5,), boxes=((10, 10, 40, 30),)),
        ImageItem("plain", photo()),
    ]


def test_score_api_options_cache_keys_and_localization_only_with_boxes(tmp_path):
    from study.explainers import explain
    from study.scoring.scorer import score

    model = _tiny_classifier()
    items = _items()
    table = score(model, items, ["random"], tmp_path, step=12544, plots=False, progress=False,
                  explainer_options={"random": {"grid": 3}}, seed=4)
    located = table[table["metric"] == "pointing_game"]
    assert located["image_id"].tolist() == ["boxed"]
    assert set(table[table["image_id"] == "plain"]["metric"]) == {
        "deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence"}
    assert table.loc[table["image_id"] == "boxed", "target_class"].iloc[0] == 5  # the label, not top-1
    with torch.no_grad():
        x = model.preprocess([item.image for item in items])
        top1 = int(model(x[1:]).argmax(1))
    assert table.loc[table["image_id"] == "plain", "target_class"].iloc[0] == top1

    cached = sorted((tmp_path / "cache" / "maps" / "random").glob("*.npy"))
    assert len(cached) == 2
    fresh = explain("random", model, x, torch.tensor([5, top1]), seed=4, grid=3)
    boxed = next(p for p in cached if p.name.startswith("boxed-"))
    np.testing.assert_allclose(np.load(boxed, allow_pickle=False), fresh[0].numpy(), atol=1e-6)

    score(model, items, ["random"], tmp_path, step=12544, plots=False, progress=False,
          explainer_options={"random": {"grid": 5}}, seed=4)
    assert len(list((tmp_path / "cache" / "maps" / "random").glob("*.npy"))) == 4  # new options, new maps


def test_score_with_every_method_is_byte_identical_for_a_seed(tmp_path):
    """What `camstudy demo` promises: a rerun (no cache) writes the same faithfulness.csv and curves.csv."""
    from study.explainers import general_methods
    from study.scoring.scorer import score

    model, items = _tiny_classifier(), _items()
    options = {"rise": {"n_masks": 16}, "lime": {"num_samples": 16}}
    written = []
    for run in ("a", "b"):
        score(model, items, general_methods(), tmp_path / run, step=1254, plots=False, progress=False,
              explainer_options=options, seed=3)
        written.append([(tmp_path / run / name).read_bytes() for name in ("faithfulness.csv", "curves.csv")])
    assert written[0] == written[1]
    score(model, items, ["random", "rise"], tmp_path / "c", step=1254, plots=False, progress=False,
          explainer_options={"rise": {"n_masks": 16}}, seed=4)
    other = (tmp_path / "c" / "faithfulness.csv").read_text().splitlines()
    assert [line for line in other if ",random," in line] != [
        line for line in written[0][0].decode().splitlines() if ",random," in line]


def test_score_api_sanity_rows_name_each_stage(tmp_path):
    from metrics import default_stages
    from study.scoring.scorer import score

    model = _tiny_classifier()
    table = score(model, _items()[:1], ["gradcam"], tmp_path, step=50176, plots=False, progress=False, sanity=True)
    sanity = table[table["metric"] == "randomization_spearman"]
    stages = [json.loads(p)["stage"] for p in sanity["params"]]
    assert stages == default_stages(model) == ["network.6", "network.2", "network.0"]
    assert sanity["value"].notna().all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"methods": []}, "unknown method"),
        ({"methods": ["gradcam", "gradcam"]}, "listed twice"),
        ({"methods": ["gradcam"], "explainer_options": {"rise": {"n_masks": 5}}}, "not scored"),
        ({"methods": ["rise"], "explainer_options": {"rise": {"n_mask": 5}}}, "valid options: grid, n_masks, p"),
        ({"methods": ["gradcam"], "target": "truth"}, "target must be"),
    ],
)
def test_score_api_refuses_bad_requests(tmp_path, kwargs, message):
    from study.scoring.scorer import score

    with pytest.raises(ValueError, match=message):
        score(_tiny_classifier(), _items(), out_dir=tmp_path, progress=False, **kwargs)
