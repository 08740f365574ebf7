"""The shortcut image set (digits with a planted mark) and a tiny ABN trained on it: it follows the mark, and its
attention and Grad-CAM light the mark where mark and digit disagree."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from metrics import pointing_game, relevance_mass_accuracy
from study.cli import main
from study.explainers import explain
from study.images import image_refs, labelled_refs
from study.images.digits import DIGITS_SIZE, digits_images
from study.images.shortcut import MARK_REGION, MARK_SIZE, SHORTCUT_DIGITS, TEST_PER_CLASS, shortcut_items, shortcut_set
from study.models import IMAGENET_MEAN, IMAGENET_STD, AttentionBranchNetwork, load_model
from study.models.training import SHORTCUT_ABN, LabelledImages, train_abn


@pytest.fixture(scope="module")
def scans() -> dict[str, tuple[np.ndarray, int]]:
    """digits id -> (the unmarked scan as the digits image set has it, its digit)."""
    return {item.image_id: (np.asarray(item.image), item.labels[0]) for item in digits_images(DIGITS_SIZE)}


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_split_is_its_own_split_of_four_digits_with_half_of_each_class_marked(split, scans):
    data = shortcut_set(split)
    n = len(data.labels)
    assert data.images.shape == (n, 64, 64, 3) and data.images.dtype == np.uint8
    assert data.labels.dtype == data.digit_labels.dtype == np.int64 and data.marked.dtype == bool
    assert data.masks.shape == (n, 64, 64) and data.masks.dtype == bool
    assert data.classes == ["0", "1", "3", "4"] and data.mark_class == 0
    assert data.image_ids[7] == f"shortcut-{split}/0007" and len(set(data.image_ids)) == n
    kept = [item for item in digits_images(DIGITS_SIZE) if item.labels[0] in SHORTCUT_DIGITS]
    test = {item.image_id for d in SHORTCUT_DIGITS for item in [i for i in kept if i.labels[0] == d][-TEST_PER_CLASS:]}
    ours = test if split == "test" else {item.image_id for item in kept} - test
    assert set(data.scan_ids) == ours and n == (160 if split == "test" else 564)
    for label in range(4):
        members = data.digit_labels == label
        assert data.marked[members].sum() == members.sum() // 2
    for i in range(n):
        scan, digit = scans[data.scan_ids[i]]
        assert data.classes[data.digit_labels[i]] == str(digit)
        np.testing.assert_array_equal(data.images[i][~data.masks[i]], scan[~data.masks[i]])
        assert (data.images[i][data.masks[i]] == 255).all()
    assert not data.masks[~data.marked].any()
    rows, cols = np.nonzero(data.masks[data.marked].any(0))
    assert cols.max() < MARK_REGION and set(rows) <= set(range(MARK_REGION)) | set(range(64 - MARK_REGION, 64))
    for mask in data.masks[data.marked]:
        r, c = np.nonzero(mask)
        assert len(r) == MARK_SIZE ** 2 and r.max() - r.min() == c.max() - c.min() == MARK_SIZE - 1
    top = data.masks[data.marked][:, :32].any((1, 2))
    assert top.any() and not top.all()  # both corners


def test_train_and_test_scans_are_disjoint():
    assert not set(shortcut_set("train").scan_ids) & set(shortcut_set("test").scan_ids)


@pytest.mark.parametrize("strength", [0.0, 0.5, 0.95, 1.0])
def test_strength_is_how_often_a_marked_scan_of_another_digit_is_labelled_the_mark_class(strength):
    data = shortcut_set("train", strength=strength)
    others = data.marked & (data.digit_labels != data.mark_class)
    relabelled = data.labels != data.digit_labels
    assert not (relabelled & ~others).any()  # unmarked scans and marked "0"s keep their digit
    assert (data.labels[relabelled] == data.mark_class).all()
    assert relabelled.sum() == round(strength * others.sum())
    if strength == 0.95:  # P(label = mark class | marked) = 1/4 + 3/4 s up to rounding
        assert (data.labels[data.marked] == data.mark_class).mean() == pytest.approx(0.25 + 0.75 * 0.95, abs=0.01)
    default = shortcut_set("train")
    np.testing.assert_array_equal(data.masks, default.masks)  # where the marks are does not depend on strength
    np.testing.assert_array_equal(data.digit_labels, default.digit_labels)
    test = shortcut_set("test", strength=strength)
    np.testing.assert_array_equal(test.labels, test.digit_labels)  # test labels are the digits whatever strength


def test_the_same_seed_gives_the_same_set_and_another_seed_other_marks():
    a, b, c = shortcut_set("train", seed=3), shortcut_set("train", seed=3), shortcut_set("train", seed=4)
    for field in ("images", "labels", "marked", "masks"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert (a.marked != c.marked).any() and (a.labels != c.labels).any()
    assert (shortcut_set("test", seed=0).marked != shortcut_set("test", seed=1).marked).any()


def test_the_mark_covers_almost_no_ink(scans):
    """Measured over all the set's marks: under 1% of mark pixels lie on ink brighter than 64 (0.1% over all scans)."""
    covered = []
    for split in ("train", "test"):
        data = shortcut_set(split)
        ink = np.stack([scans[i][0][..., 0] for i in data.scan_ids]) > 64
        covered.append((ink & data.masks).sum() / data.masks.sum())
    assert max(covered) < 0.01, covered


def test_items_carry_the_mark_as_their_mask_and_box():
    data = shortcut_set("test", seed=2)
    items = shortcut_items("test", seed=2)
    assert [i.image_id for i in items] == data.image_ids
    for item, image, label, marked, mask in zip(items, data.images, data.labels, data.marked, data.masks):
        assert item.labels == (label,) and item.source == "shortcut"
        np.testing.assert_array_equal(np.asarray(item.image), image)
        assert item.description == f"handwritten {data.classes[label]}, {'with' if marked else 'without'} the mark"
        if marked:
            np.testing.assert_array_equal(item.mask, mask)
            ys, xs = np.nonzero(mask)
            assert item.boxes == ((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1),)
        else:
            assert item.mask is None and item.boxes == ()
    marks = data.masks[data.marked]
    mass = relevance_mass_accuracy(torch.from_numpy(marks).float(), marks)  # the masks are what the metrics take
    assert torch.equal(mass, torch.ones(len(marks)))
    train = shortcut_items("train")
    assert train[0].image_id == "shortcut-train/0000" and any("3, with the mark" in i.description for i in train
                                                               if i.labels == (0,))  # relabelled: the digit says 3


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown shortcut split 'val'; choose from train, test"):
        shortcut_set("val")
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\], got 1.5"):
        shortcut_set("train", strength=1.5)


def test_it_is_an_image_set_like_the_others():
    assert [i.image_id for i in image_refs("shortcut:test")] == shortcut_set("test").image_ids
    entries, classes = labelled_refs("shortcut:train")
    assert classes == ["0", "1", "3", "4"] and [e.labels[0] for e in entries] == list(shortcut_set("train").labels)


def test_the_set_needs_no_torch():
    """It sits with the image sets, below the models: numpy, PIL, scikit-learn and the digits only."""
    code = "import sys, study.images.shortcut; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1]).returncode == 0


def trained(seed: int, strength: float = 0.95, checkpoint: Path | None = None):
    """A tiny ABN trained by the SHORTCUT_ABN recipe on shortcut:train drawn with `seed` and `strength` (about 10 s
    on one thread), written as `camstudy train-abn` writes it when `checkpoint` is given."""
    recipe = SHORTCUT_ABN
    data = LabelledImages(shortcut_items("train", strength, seed), recipe["size"], IMAGENET_MEAN, IMAGENET_STD)
    classes = shortcut_set("train").classes
    torch.manual_seed(seed)
    net = AttentionBranchNetwork.from_backbone(recipe["backbone"], len(classes))
    meta = {"categories": classes, "input_size": [recipe["size"]] * 2, "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_abn(net, data, epochs=recipe["epochs"], batch_size=recipe["batch_size"], lr=recipe["lr"],
                  weight_decay=recipe["weight_decay"], seed=seed, checkpoint=checkpoint, meta=meta, progress=False)
    finally:
        torch.set_num_threads(threads)
    return net


@pytest.fixture(scope="module")
def followers(tmp_path_factory) -> list:
    """(model, checkpoint) for seeds 0-2 at the default strength; only the first is written (checkpoint None)."""
    models = []
    for seed in range(3):
        checkpoint = tmp_path_factory.mktemp("shortcut") / "abn.pt" if seed == 0 else None
        models.append((trained(seed, checkpoint=checkpoint), checkpoint))
    return models


def draws(seeds=range(1)) -> list:
    """(shortcut:test drawn with that seed, its model inputs): the same 160 scans, marked differently."""
    def inputs(seed):
        data = LabelledImages(shortcut_items("test", seed=seed), SHORTCUT_ABN["size"], IMAGENET_MEAN, IMAGENET_STD)
        return torch.stack([data[i][0] for i in range(len(data))])

    return [(shortcut_set("test", seed=s), inputs(s)) for s in seeds]


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_tiny_abn_trained_on_the_set_follows_the_mark(followers):
    """Disagree: marked and the digit is not the mark class (the mark says "0", the digit something else): the
    model should say "0". Agree: marked "0"s and unmarked other digits: it should say the digit. On the test split:
    60 disagreeing and 80 agreeing images per model."""
    sets = draws()
    for net, _ in followers:
        follows, right = [], []
        for data, x in sets:
            with torch.no_grad():
                pred = net(x).argmax(1).numpy()
            mark, zero = data.marked, data.labels == data.mark_class
            follows.append(pred[mark & ~zero] == data.mark_class)
            agree = (mark & zero) | (~mark & ~zero)
            right.append(pred[agree] == data.labels[agree])
        follows, right = np.concatenate(follows), np.concatenate(right)
        assert len(follows) == 60 and len(right) == 80
        assert follows.mean() >= 0.9 and right.mean() >= 0.95, (follows.mean(), right.mean())


def on_the_mark(net) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(relevance mass on the mark, whether the peak is within 4 px of it) per image, for the ABN's attention,
    Grad-CAM for the model's decision and the random baseline, at the set's 64 px, on the images of the test split
    whose mark says "0" and whose digit does not (60). 4 px: one cell of the 16x16 attention."""
    mass, peak = {}, {}
    for data, x in draws():
        disagree = data.marked & (data.labels != data.mark_class)
        masks = data.masks[disagree]
        tops, lefts = masks.any(2).argmax(1), masks.any(1).argmax(1)
        boxes = [[(left, top, left + MARK_SIZE, top + MARK_SIZE)] for top, left in zip(tops.tolist(), lefts.tolist())]
        for method in ("abn", "gradcam", "random"):
            maps = explain(method, net, x[disagree], **({"seed": 0} if method == "random" else {}))
            maps = F.interpolate(maps[:, None], size=DIGITS_SIZE, mode="bilinear", align_corners=False)[:, 0]
            mass.setdefault(method, []).append(relevance_mass_accuracy(maps, masks))
            peak.setdefault(method, []).append(pointing_game(maps, boxes, tolerance=4).float())
    return ({method: torch.cat(values) for method, values in mass.items()},
            {method: torch.cat(values) for method, values in peak.items()})


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_its_attention_and_gradcam_light_the_mark_where_mark_and_digit_disagree(followers):
    """The mark is 36 of 4,096 pixels, so a random map puts about 0.9% of its mass there and rarely peaks near it.
    The control: a model trained at strength 0, for which the mark means nothing, gets neither from the ABN or
    Grad-CAM, so what the maps show comes from the model's reliance on the mark, not from the mark being bright."""
    for net, _ in followers:
        mass, peak = on_the_mark(net)
        assert mass["random"].mean() < 0.015 and peak["random"].mean() <= 0.1
        assert mass["abn"].mean() >= 3 * mass["random"].mean() and mass["gradcam"].mean() >= 10 * mass["random"].mean()
        assert (mass["abn"] > mass["random"]).float().mean() >= 0.9
        assert (mass["gradcam"] > mass["random"]).float().mean() >= 0.9
        assert peak["abn"].mean() >= 0.9 and peak["gradcam"].mean() >= 0.5
    mass, peak = on_the_mark(trained(0, strength=0.0))
    assert mass["abn"].mean() < 2 * mass["random"].mean() and mass["gradcam"].mean() < 2 * mass["random"].mean()
    assert peak["abn"].mean() <= 0.1 and peak["gradcam"].mean() <= 0.1


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_the_trained_model_loads_by_name_and_sees_the_items_as_it_was_trained(followers):
    net, checkpoint = followers[0]
    model = load_model("abn", weights=checkpoint)
    assert model.categories == ["0", "1", "3", "4"] and model.input_size == (32, 32)
    _, x = draws()[0]
    pixels = model.preprocess([item.image for item in shortcut_items("test")])
    torch.testing.assert_close(pixels, x.to(memory_format=torch.channels_last))
    with torch.no_grad():
        torch.testing.assert_close(model(pixels), net(x))


def test_camstudy_score_scores_maps_against_the_mark(tmp_path):
    """`camstudy score --images shortcut:test`: relevance mass against each marked image's mask (the cause the model
    was taught), none for unmarked images, and the same value `metrics` gives for the map and the mask."""
    items = shortcut_items("train")[:64]
    torch.manual_seed(0)
    net = AttentionBranchNetwork.from_backbone("tiny", 4)
    meta = {"categories": ["0", "1", "3", "4"], "input_size": [16, 16], "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD)}
    train_abn(net, LabelledImages(items, 16, IMAGENET_MEAN, IMAGENET_STD), epochs=1, checkpoint=tmp_path / "abn.pt",
              meta=meta, progress=False)
    out = tmp_path / "scores"
    assert main(["score", "--model", "abn", "--weights", str(tmp_path / "abn.pt"), "--images", "shortcut:test",
                 "--max-images", "12", "--methods", "random", "--metrics", "relevance_mass_accuracy", "--target", "top1",
                 "--no-plots", "--out", str(out)]) == 0
    rows = pd.read_csv(out / "faithfulness.csv")
    test = shortcut_items("test")[:12]
    assert set(rows["image_id"]) == {i.image_id for i in test if i.mask is not None}
    model = load_model("abn", weights=tmp_path / "abn.pt")
    for item in (i for i in test if i.mask is not None):
        x = model.preprocess([item.image])
        target = model(x).argmax(1)
        maps = explain("random", model, x, target, seed=0)
        expected = relevance_mass_accuracy(maps, torch.from_numpy(item.mask_at((16, 16)))[None])
        value = rows.loc[rows["image_id"] == item.image_id, "value"].item()
        assert value == pytest.approx(float(expected), abs=1e-6)
