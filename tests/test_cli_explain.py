"""`camstudy explain` writes maps and overlays; bad requests are one-line errors with exit status 2."""
import numpy as np
from PIL import Image

from study.cli import main


def test_explain_writes_maps_overlays_and_grid(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    out = tmp_path / "out"
    assert main(["explain", "--images", str(folder), "--methods", "cam,gradcam", "--out", str(out)]) == 0
    for image_id in ("a", "b"):
        for method in ("cam", "gradcam"):
            saliency = np.load(out / image_id / f"{method}.npy", allow_pickle=False)
            assert saliency.shape == (224, 224) and saliency.min() == 0.0 and saliency.max() == 1.0
            assert Image.open(out / image_id / f"{method}.png").size == (60, 40)
    assert (out / "grid.png").is_file()
    assert "wrote 2 images x 2 methods" in capsys.readouterr().out


def test_explain_errors_are_one_line(tmp_path, capsys):
    cases = [
        (["--methods", "nope"], "unknown method nope"),
        (["--images", str(tmp_path / "missing")], "image folder not found"),
        (["--target-layer", "layer99"], "has no layer"),
    ]
    for extra, message in cases:
        assert main(["explain", "--out", str(tmp_path / "o"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and err.startswith("camstudy explain: error:")
