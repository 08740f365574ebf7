"""Pictures of explanations: heatmap overlays, the guided RGB view, example-based explanations, and an
images x methods grid."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont, ImageOps


def _array(saliency) -> np.ndarray:
    a = saliency.detach().float().cpu().numpy() if isinstance(saliency, torch.Tensor) else np.asarray(saliency, float)
    if a.ndim != 2:
        raise ValueError(f"a saliency map must be 2-D (H,W), got shape {a.shape}")
    return a


def heatmap(saliency, cmap: str = "jet") -> Image.Image:
    """A [0,1] map as an RGB colour image at the map's own size."""
    rgb = colormaps[cmap](np.clip(_array(saliency), 0.0, 1.0))[..., :3]
    return Image.fromarray((rgb * 255).round().astype(np.uint8))


def overlay(image: Image.Image, saliency, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
    """The map's colours blended over the photo, at the photo's size (the map is resized, not the photo)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colours = heatmap(saliency, cmap).resize(image.size, Image.BILINEAR)
    return Image.blend(image.convert("RGB"), colours, alpha)


def guided_view(rgb_map) -> Image.Image:
    """A signed RGB attribution (guided backprop, Tensor[3,H,W]) as an image people can see.

    The Grad-CAM authors' display normalisation: `clip(0.5 + 0.1 * (a - mean(a)) / std(a), 0, 1)`
    over all pixels and channels. Centring on the mean and dividing by the standard deviation makes
    the picture independent of the map's scale and offset (min-max scaled or raw give the same
    image), and a few outlier pixels cannot flatten everything else to grey, as dividing by the
    largest magnitude did.
    """
    a = rgb_map.detach().float().cpu().numpy() if isinstance(rgb_map, torch.Tensor) else np.asarray(rgb_map, float)
    if a.ndim != 3 or a.shape[0] != 3:
        raise ValueError(f"a guided map must be (3,H,W), got shape {a.shape}")
    centred = a - a.mean()
    rgb = np.clip(0.5 + 0.1 * centred / (centred.std() + 1e-12), 0.0, 1.0).transpose(1, 2, 0)
    return Image.fromarray((rgb * 255).round().astype(np.uint8))


def picture(image: Image.Image, saliency) -> Image.Image:
    """What people are shown for a map, at the photo's size: a guided RGB map [3,H,W] on its own
    (`guided_view`, as in the Grad-CAM paper), any other [H,W] map as a heatmap over the photo.

    A guided map is resized before it is normalised, so its contrast is set at the size people
    see (resizing the finished picture would blur its fine detail back towards grey)."""
    if getattr(saliency, "ndim", 2) == 3:
        rgb = torch.as_tensor(saliency).detach().float().cpu()
        resized = torch.nn.functional.interpolate(rgb[None], size=image.size[::-1], mode="bilinear",
                                                  align_corners=False)[0]
        return guided_view(resized)
    return overlay(image, saliency)


def examples_picture(image: Image.Image, examples: Sequence[tuple[Image.Image, str]], cell: int = 128) -> Image.Image:
    """The image on the left and its training examples on the right, each with its label written under it.

    One picture rather than k+1, so the examples cannot be shown apart from their image or in another order,
    and the labels are part of what the participant sees. Each picture fits a `cell` x `cell` square (aspect
    kept); a grey rule separates the image from the examples.
    """
    pad, text_height, rule = cell // 16, cell // 5, cell // 4
    font = ImageFont.load_default(size=max(10, cell // 9))
    width = pad + cell + rule + len(examples) * (cell + pad)
    canvas = Image.new("RGB", (width, pad + cell + text_height + pad), "white")
    draw = ImageDraw.Draw(canvas)

    def place(picture: Image.Image, left: int, text: str) -> None:
        fitted = ImageOps.contain(picture.convert("RGB"), (cell, cell), Image.BILINEAR)
        canvas.paste(fitted, (left + (cell - fitted.width) // 2, pad + (cell - fitted.height) // 2))
        while len(text) > 1 and draw.textlength(text, font=font) > cell:
            text = text[:-2] + "…"
        draw.text((left + cell // 2, pad + cell + text_height // 2), text, fill="black", font=font, anchor="mm")

    place(image, pad, "the image")
    middle = pad + cell + rule // 2
    draw.line([(middle, pad), (middle, pad + cell + text_height)], fill=(160, 160, 160), width=2)
    for i, (example, label) in enumerate(examples):
        place(example, pad + cell + rule + i * (cell + pad), f"label: {label}")
    return canvas


def grid_figure(
    images: Sequence[Image.Image],
    maps: Mapping[str, torch.Tensor | np.ndarray],
    titles: Sequence[str] | None = None,
    cell: float = 1.8,
) -> Figure:
    """A grid with one row per image and one column per method (plus the photo), for reports and papers.

    `maps[method]` holds [H,W] maps, or guided RGB maps [3,H,W], one per image (see `picture`)."""
    methods = list(maps)
    fig = Figure(figsize=(cell * (len(methods) + 1), cell * len(images)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(images), len(methods) + 1, squeeze=False))
    for row, image in enumerate(images):
        axes[row, 0].imshow(image)
        axes[row, 0].set_ylabel(titles[row] if titles else "", fontsize=8)
        for col, method in enumerate(methods, start=1):
            axes[row, col].imshow(picture(image, maps[method][row]))
            if row == 0:
                axes[row, col].set_title(method, fontsize=9)
        if row == 0:
            axes[row, 0].set_title("image", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
