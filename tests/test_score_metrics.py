"""`camstudy score --metrics`: choosing metric families, every new metric, per-family caching, the catalog
that names them (codebook, report labels) and their correlations with human measures."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from _metrics_fixtures import write_voc_set
from study.cli import main
from study.scoring.catalog import BY_NAME, DEFAULT_FAMILIES, FAMILIES, METRICS, choose_families, codebook_text

TINY = "_metrics_fixtures:score_test_network"


def _tiny_classifier():
    from study import load_model

    return load_model(TINY, weights="random")


def _items():
    from study.images import ImageItem

    rng = np.random.default_rng(1)
    photo = lambda: Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))  # noqa: E731
    return [ImageItem("boxed", photo(), labels=(5,), boxes=((10, 10, 40, 30),)), ImageItem("plain", photo())]


def _cache_files(out):
    return {p.relative_to(out / "cache").as_posix() for p in (out / "cache").rglob("*.json")}


def test_the_catalog_and_the_computations_name_the_same_families():
    from study.scoring.families import WORK

    assert tuple(WORK) == FAMILIES
    assert DEFAULT_FAMILIES == ("deletion", "insertion", "confidence", "localization")
    assert all(m.better in ("lower", "higher") for m in METRICS)
    text = codebook_text()
    for metric in METRICS:
        assert f"{metric.name} ({metric.better} is better" in text


def test_metric_names_choose_their_family_in_catalog_order():
    assert choose_families(["sparseness", "deletion_auc", "average_drop"]) == ["deletion", "confidence", "sparseness"]
    assert choose_families(["all"]) == list(FAMILIES)
    with pytest.raises(ValueError, match="unknown metric sparsity; choose from all, deletion, insertion"):
        choose_families(["sparsity"])


def test_bad_metric_name_exits_2_in_one_line_naming_the_valid_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("study.load_model", lambda *a, **k: pytest.fail("checked after loading the model"))
    assert main(["score", "--metrics", "deletion,sparsity", "--methods", "random", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("camstudy score: error:") and "sparsity" in err
    assert all(family in err for family in FAMILIES)


def test_cli_metrics_choose_rows_and_a_rerun_adding_one_computes_only_it(tmp_path, monkeypatch):
    images, annotations = write_voc_set(tmp_path / "voc")
    out = tmp_path / "scores"
    argv = ["score", "--model", TINY, "--weights", "random", "--images", f"voc:{images}:{annotations}",
            "--methods", "gradcam,random", "--step", "12544", "--no-plots", "--out", str(out)]
    assert main(argv + ["--metrics", "deletion_auc,sparseness,relevance_mass_accuracy"]) == 0
    table = pd.read_csv(out / "faithfulness.csv")
    assert set(table["metric"]) == {"deletion_auc", "sparseness", "relevance_mass_accuracy"}
    assert len(table) == 2 * 2 * 3
    assert set(pd.read_csv(out / "curves.csv")["curve"]) == {"deletion"}
    before = _cache_files(out)

    monkeypatch.setattr("study.scoring.scorer.explain", lambda *a, **k: pytest.fail("maps are cached"))
    monkeypatch.setattr("metrics.causal_curves", lambda *a, **k: pytest.fail("deletion is cached"))
    calls = []
    import metrics

    complexity = metrics.complexity
    monkeypatch.setattr("metrics.complexity", lambda maps: calls.append(len(maps)) or complexity(maps))
    assert main(argv + ["--metrics", "deletion,sparseness,relevance_mass_accuracy,complexity"]) == 0
    added = _cache_files(out) - before
    assert {name.split("/")[0] for name in added} == {"complexity"} and len(added) == 4
    assert calls == [2, 2]  # one batch per method
    again = pd.read_csv(out / "faithfulness.csv")
    assert set(again["metric"]) == {"deletion_auc", "sparseness", "relevance_mass_accuracy", "complexity"}
    pd.testing.assert_frame_equal(again[again["metric"] != "complexity"].reset_index(drop=True), table)


def test_all_metrics_on_a_tiny_model_with_independent_sanity_and_logit_scores(tmp_path):
    from study.scoring.scorer import score

    table = score(_tiny_classifier(), _items(), ["gradcam"], tmp_path, metrics=["all"], step=12544,
                  sanity_mode="independent", score="logit", plots=False, progress=False, seed=2)
    assert set(table["metric"]) == set(BY_NAME)
    boxed_only = {"pointing_game", "energy_pointing_game", "box_localization", "box_iou",
                  "relevance_mass_accuracy", "relevance_rank_accuracy"}
    assert set(table.loc[table["image_id"] == "plain", "metric"]) == set(BY_NAME) - boxed_only
    params = {metric: json.loads(p) for metric, p in zip(table["metric"], table["params"])}
    assert params["randomization_spearman"]["mode"] == "independent"
    for scored in ("deletion_auc", "insertion_lerf_auc", "average_drop", "road_morf", "infidelity"):
        assert params[scored]["score"] == "logit", scored
    assert "score" not in params["sparseness"] and params["road_lerf"]["percentages"][0] == 0.1
    values = table.set_index(["image_id", "metric"])["value"]
    assert values.drop("randomization_spearman", level="metric").notna().all()
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert list(dict.fromkeys(curves["curve"])) == ["deletion", "insertion", "deletion_lerf", "insertion_lerf"]


def test_values_in_the_csv_are_the_metric_functions_on_the_cached_maps(tmp_path):
    import metrics
    from study.scoring.scorer import score

    model, items = _tiny_classifier(), _items()
    table = score(model, items, ["random"], tmp_path, metrics=["sparseness", "relevance_mass_accuracy", "infidelity"],
                  plots=False, progress=False, seed=5)
    maps = {p.name.split("-")[0]: torch.from_numpy(np.load(p)) for p in (tmp_path / "cache" / "maps" / "random").glob("*.npy")}
    stacked = torch.stack([maps["boxed"], maps["plain"]])
    value = table.set_index(["image_id", "metric"])["value"]
    assert value["plain", "sparseness"] == float(metrics.sparseness(stacked)[1])
    boxes_at_map = items[0].boxes_at((224, 224))
    masks = metrics.box_masks([boxes_at_map], (224, 224))
    assert value["boxed", "relevance_mass_accuracy"] == float(metrics.relevance_mass_accuracy(stacked[:1], masks)[0])
    with torch.no_grad():
        x = model.preprocess([item.image for item in items])
    targets = torch.tensor(table.drop_duplicates("image_id")["target_class"].tolist())
    direct = metrics.infidelity(model, x, stacked, targets, seed=5, batch_size=32)
    assert value["boxed", "infidelity"] == pytest.approx(float(direct[0]), rel=1e-4)
    assert value["plain", "infidelity"] == pytest.approx(float(direct[1]), rel=1e-4)


def test_a_new_metric_shows_up_in_correlations(tmp_path):
    from _export_fixtures import populate_study, synthetic_faithfulness, synthetic_results

    from study.results import export

    folder = populate_study(tmp_path / "study")
    faith = synthetic_faithfulness(synthetic_results()[0])
    sparse = faith.assign(metric="sparseness", value=faith["value"][::-1].to_numpy())
    pd.concat([faith, sparse]).to_csv(folder / "faithfulness.csv", index=False)
    tables = export.export_tables(folder, n_resamples=200)
    assert set(tables["correlations"]["metric"]) == {"deletion_auc", "sparseness"}


def test_report_metrics_table_labels_every_metric_with_its_direction(tmp_path):
    from study.results.report import metric_means

    faith = pd.DataFrame({"image_id": ["a", "a", "a", "b"], "model": "m", "method": "gradcam", "target_class": 1,
                          "metric": ["sparseness", "deletion_auc", "custom", "sparseness"],
                          "value": [0.2, 0.1, 3.0, 0.4], "params": "{}"})
    means = metric_means(faith)
    assert list(means.columns) == ["model", "method", "deletion_auc (lower is better)",
                                   "sparseness (higher is better)", "custom"]
    assert means["sparseness (higher is better)"].iloc[0] == pytest.approx(0.3)


def test_score_runs_cpu_cache_sized_chunks_of_at_most_batch_size(tmp_path, monkeypatch):
    import metrics.model_calls
    from study.scoring.scorer import score

    model, sizes = _tiny_classifier(), []
    model.register_forward_hook(lambda module, inputs, output: sizes.append(inputs[0].shape[0]))
    run = dict(metrics=["deletion", "insertion", "infidelity"], step=12544, plots=False, progress=False, seed=3)
    monkeypatch.setattr(metrics.model_calls, "CPU_CHUNK_VALUES", 3 * 3 * 224 * 224)  # three 3x224x224 inputs
    small = score(model, _items(), ["gradcam"], tmp_path / "small", **run)
    assert max(sizes) == 3
    sizes.clear()
    monkeypatch.setattr(metrics.model_calls, "CPU_CHUNK_VALUES", 2**40)
    large = score(model, _items(), ["gradcam"], tmp_path / "large", batch_size=5, **run)
    assert max(sizes) == 5  # --batch-size bounds the chunk
    np.testing.assert_allclose(small["value"], large["value"], rtol=1e-5, atol=1e-12)


def test_a_randomised_methods_cached_maps_are_keyed_by_the_chunk_they_ran_in(tmp_path, monkeypatch):
    import metrics.model_calls
    from study.scoring.scorer import score

    run = dict(metrics=["sparseness"], plots=False, progress=False, seed=3, explainer_options={"rise": {"n_masks": 8}})
    for values in (3 * 224 * 224, 2**40):  # chunks of 1, then of 32: captum's samplers are seeded per chunk
        monkeypatch.setattr(metrics.model_calls, "CPU_CHUNK_VALUES", values)
        score(_tiny_classifier(), _items(), ["rise", "gradcam"], tmp_path, **run)
    maps = tmp_path / "cache" / "maps"
    assert len(list((maps / "rise").glob("*.npy"))) == 4  # two images, each at two chunk sizes
    assert len(list((maps / "gradcam").glob("*.npy"))) == 2  # deterministic maps do not depend on chunks
