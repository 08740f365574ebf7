"""Files the toolkit ships in `data/` (installed as the `study._data` package), found in a checkout too."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_path(name: str) -> Path:
    """Path of a shipped data file such as `bundled.toml` or `sample_study.toml`."""
    try:
        candidate = Path(str(resources.files("study._data") / name))
        if candidate.is_file():
            return candidate
    except ModuleNotFoundError:
        pass
    candidate = Path(__file__).resolve().parent.parent / "data" / name
    if not candidate.is_file():
        raise FileNotFoundError(f"camstudy's data file {name!r} is missing from the installation")
    return candidate
