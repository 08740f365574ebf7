"""What `camstudy score --out DIR` writes, named once: its files, their columns, and file-safe names.

The scorer writes these; `camstudy export` and `camstudy report` read them (from a study folder, its
`scores/` or where `--scores` points). Imports nothing heavy, so the results layer can use it.
"""
from __future__ import annotations

import re

from study.scoring.catalog import codebook_text

FAITHFULNESS_FILE = "faithfulness.csv"
CURVES_FILE = "curves.csv"            # the mean deletion / insertion curve per model and method
CURVE_COLUMNS = ["model", "method", "curve", "fraction", "value"]
CURVES_PLOT = "curves.png"
TABLE_PLOT = "metrics_table.png"
# Where `camstudy score --out` may have written inside a study folder, in search order.
SCORE_FOLDERS = (".", "scores", "score")

# faithfulness.csv: (column, type, description), in file order (the export's codebook lists them too).
FAITHFULNESS_COLUMNS: list[tuple[str, str, str]] = [
        ("image_id", "string", "Id of the image scored."),
        ("model", "string", "Classifier explained."),
        ("method", "string", "Explanation method scored."),
        ("target_class", "integer", "ImageNet class index the map explains."),
        ("metric", "string", codebook_text()),
        ("value", "float", "The metric's value for this map."),
        ("params", "string", "JSON of the metric's parameters (step, substrate, percentages, seed, mode, ...; score when not softmax)."),
]


def faithfulness_header() -> list[str]:
    return [name for name, _, _ in FAITHFULNESS_COLUMNS]


def safe_name(image_id: str) -> str:
    """An image id (or method name) as a file name: ids of folder images may contain slashes."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "__", image_id)
