"""`camstudy score` under torchrun: 2 gloo ranks write the bytes one process writes, and a run killed
part-way resumes computing only what is missing. Also the ImageNet validation layout it reads."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from study.cli import main

ROOT = Path(__file__).resolve().parents[1]
NETWORK = "_metrics_fixtures:score_network_that_dies"
SYNSETS = ["n01440764 tench, Tinca tinca", "n01443537 goldfish, Carassius auratus", "n01484850 great white shark"]
OUTPUTS = ("faithfulness.csv", "curves.csv")


def write_imagenet_val(root: Path, n: int = 6) -> str:
    """A fake ImageNet validation set: n JPEGs, LOC_val_solution.csv (rows not in id order) and the synset mapping."""
    (root / "val").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        image_id = f"ILSVRC2012_val_{i + 1:08d}"
        w, h = 40 + 4 * i, 48
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "val" / f"{image_id}.JPEG")
        wnid = SYNSETS[i % 3].split()[0]
        boxes = f"{wnid} 2 3 {w // 2} {h // 2}" + (f" {wnid} {w // 2} 0 {w - 1} {h - 1}" if i % 2 else "")
        rows.append(f"{image_id},{boxes} ")
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(reversed(rows)) + "\n")
    (root / "LOC_synset_mapping.txt").write_text("\n".join(SYNSETS) + "\n")
    return f"imagenet:{root / 'val'}:{root / 'LOC_val_solution.csv'}:{root / 'LOC_synset_mapping.txt'}"


def score_argv(images: str, out: Path) -> list[str]:
    return ["score", "--model", NETWORK, "--weights", "random", "--images", images, "--methods", "random,gradcam",
            "--step", "6272", "--batch-size", "2", "--no-plots", "--out", str(out),
            "--metrics", "deletion,insertion,confidence,localization,infidelity"]  # infidelity: seeded per batch


def torchrun(argv: list[str], **env) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 --no-python camstudy ...` on this worktree's code."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    environment = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **env}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python",
               str(Path(sys.executable).parent / "camstudy"), *argv]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)


def cache_files(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in (out / "cache").rglob("*") if p.is_file()}


def test_imagenet_val_layout_gives_labels_boxes_and_id_order(tmp_path):
    from study.images import image_refs

    refs = image_refs(write_imagenet_val(tmp_path))
    assert [r.image_id for r in refs] == [f"ILSVRC2012_val_{i:08d}" for i in range(1, 7)]
    assert [r.labels for r in refs[:3]] == [(0,), (1,), (2,)]
    assert refs[1].boxes == ((2, 3, 23, 25), (22, 0, 44, 48)) and refs[1].box_names == ("goldfish", "goldfish")
    item = refs[1].load()
    assert item.image.size == (44, 48) and item.boxes_at((88, 24)) == [(4, 1, 46, 13), (44, 0, 88, 24)]


@pytest.mark.parametrize("change, message", [
    (lambda root: (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\nX,n0 1 2\n"), "line 2"),
    (lambda root: (root / "LOC_val_solution.csv").write_text("id,boxes\n"), "header"),
    (lambda root: (root / "LOC_synset_mapping.txt").write_text("n01440764 tench\n"), "synset n0.* is not in"),
    (lambda root: (root / "val" / "ILSVRC2012_val_00000002.JPEG").unlink(), "no image ILSVRC2012_val_00000002"),
])
def test_imagenet_val_errors_name_the_problem(tmp_path, change, message):
    from study.images import image_refs

    spec = write_imagenet_val(tmp_path)
    change(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        image_refs(spec)
    with pytest.raises(ValueError, match="imagenet:<val images folder>"):
        image_refs(f"imagenet:{tmp_path}:x.csv")


def test_two_gloo_ranks_write_the_bytes_of_one_process_and_a_killed_run_resumes(tmp_path):
    images = write_imagenet_val(tmp_path / "imagenet")
    single = tmp_path / "single"
    assert main(score_argv(images, single)) == 0
    expected = [(single / name).read_bytes() for name in OUTPUTS]

    both = tmp_path / "both"
    run = torchrun(score_argv(images, both))
    assert run.returncode == 0, run.stderr[-3000:]
    assert [(both / name).read_bytes() for name in OUTPUTS] == expected
    assert sorted(cache_files(both)) == sorted(cache_files(single))  # the cache key ignores rank and world size

    resumed = tmp_path / "resumed"
    killed = torchrun(score_argv(images, resumed), DIE_ON_RANK="1", DIE_AFTER_FORWARDS="6")
    assert killed.returncode != 0 and not (resumed / "faithfulness.csv").exists()
    before = cache_files(resumed)
    assert 0 < len(before) < len(cache_files(single))
    assert not [p for p in (resumed / "cache").rglob("*.tmp")]
    run = torchrun(score_argv(images, resumed))
    assert run.returncode == 0, run.stderr[-3000:]
    after = cache_files(resumed)
    assert {name: after[name] for name in before} == before  # nothing computed before was written again
    assert sorted(after) == sorted(cache_files(single))
    assert [(resumed / name).read_bytes() for name in OUTPUTS] == expected
