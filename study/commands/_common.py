"""Arguments and checks that several commands share (model, images, methods, device, study folder)."""
from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from study.models import DEFAULT_MODEL  # here, so that commands without a model never import torch

    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="efficientnet_lite0 (embedded), a torchvision classifier name, or module:callable")
    parser.add_argument("--weights", default=None, help="state-dict file for the model ('random' keeps random init)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="the most images or perturbed copies per forward pass (a CPU runs fewer: they stay in cache)")
    parser.add_argument("--amp", choices=("bf16", "fp16"), default=None, help="mixed precision on GPU")


def add_study_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """STUDY_DIR, --out and --scores: what the commands that read a finished study take."""
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="study folder (study.toml, study.db, stimuli/)")
    parser.add_argument("--out", required=True, metavar="DIR", help=out_help)
    parser.add_argument("--scores", metavar="SCORE_DIR", default=None,
                        help="output folder of `camstudy score` holding faithfulness.csv "
                             "(default: the study folder or its scores/ subfolder, if scored)")


def parse_methods(text: str) -> list[str]:
    """Comma-separated method names, checked against the registry before any work starts."""
    from study.explainers import METHODS

    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS and ":" not in m]
    if not methods or unknown:
        raise ValueError(f"unknown method {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHODS)}")
    return methods


def parse_accuracy(text: str) -> dict[str, float]:
    """`method=p,method=p` -> {method: p}, every p a number in [0, 1]."""
    accuracy = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        method, sep, value = item.partition("=")
        try:
            p = float(value)
        except ValueError:
            p = float("nan")
        if not sep or not method.strip() or not 0.0 <= p <= 1.0:
            raise ValueError(f"--accuracy: {item!r} is not method=p with p in [0, 1] (pairs separated by commas)")
        accuracy[method.strip()] = p
    if not accuracy:
        raise ValueError("--accuracy takes method=p pairs, e.g. gradcam=0.8,cam=0.6")
    return accuracy


def parse_counts(text: str, option: str) -> list[int]:
    """`10,20,40` -> [10, 20, 40]: positive whole numbers."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ValueError(f"{option} takes positive whole numbers separated by commas, got {text!r}")
    return counts
