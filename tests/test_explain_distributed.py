"""`camstudy explain` under torchrun: each rank writes its own images' files, rank 0 the grid of all."""
import numpy as np
from PIL import Image

from study.cli import main
from test_score_distributed import torchrun


def test_two_ranks_write_every_image_once_and_one_grid(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    argv = ["explain", "--model", "_metrics_fixtures:score_test_network", "--weights", "random",
            "--images", str(folder), "--methods", "gradcam"]
    run = torchrun([*argv, "--out", str(tmp_path / "both")])
    assert run.returncode == 0, run.stderr[-3000:]
    assert main([*argv, "--out", str(tmp_path / "single")]) == 0
    for name in ("a", "b", "c"):
        # the same maps up to rounding: a rank's batch holds other images than the one-process batch
        np.testing.assert_allclose(np.load(tmp_path / "both" / name / "gradcam.npy"),
                                   np.load(tmp_path / "single" / name / "gradcam.npy"), atol=1e-5)
    assert (tmp_path / "both" / "grid.png").is_file()
    assert run.stdout.count("wrote 3 images x 1 methods") == 1
