"""Plots of face images: grids of faces, predictions on faces, age probabilities and feature maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from agekit.viz.base import _plt, as_image


def show_faces(images, titles: Sequence[str] | None = None, ncols: int = 8, size: float = 1.3, title: str = ""):
    """A grid of faces [N, 3, H, W] with optional captions (01_synthetic_faces)."""
    plt = _plt()
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    caption = 0.1 + 0.22 * lines  # inches per row for the captions, so multi-line ones clear the next row
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + caption)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(as_image(images[i]))
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_predictions(images, true_ages, pred_ages, position_ages=None, ncols: int = 5, title: str = "Predictions"):
    """Faces captioned with true age, EVR estimate and, if given, the position-head estimate (06; RAPL Fig. 4).

    position_ages: [N], the age label the position head points at (``AgeLabels.to_ages`` of its
    argmax), so the caption says an age, not a position index.
    """
    captions = []
    for i in range(len(images)):
        text = f"true {int(true_ages[i])}\nEVR age {float(pred_ages[i]):.1f}"
        if position_ages is not None:
            text += f"\nposition-head age {int(position_ages[i])}"
        captions.append(text)
    return show_faces(images, captions, ncols=ncols, size=1.8, title=title)


def plot_feature_maps(image, stage_maps: Mapping[str, torch.Tensor], channels: int = 6, size: float = 1.2,
                      title: str = "Feature maps"):
    """One face and a few channels of each stage's feature map, one row per stage (03_backbone_ir50).

    image: [3, H, W] uint8 or float in [0, 1]; stage_maps: {name: [c, h, w]} for that face. Each row
    shows the ``channels`` channels with the largest spatial variance, each scaled to its own range
    (dark = low, bright = high) and titled with its index; the row label gives the map's shape.
    """
    plt = _plt()
    rows = max(1, len(stage_maps))
    fig = plt.figure(figsize=(size * (channels + 1.6), size * rows + 0.6))
    grid = fig.add_gridspec(rows, channels + 1, width_ratios=[1.6] + [1] * channels)
    face = fig.add_subplot(grid[:, 0])
    face.imshow(as_image(image))
    face.set_title(f"input {image.shape[-2]}×{image.shape[-1]}", fontsize=8)
    face.axis("off")
    for row, (name, maps) in enumerate(stage_maps.items()):
        maps = torch.as_tensor(maps).detach().cpu().float()
        if maps.dim() != 3:
            raise ValueError(f"stage_maps[{name!r}] must be one face's map [c, h, w], got shape {tuple(maps.shape)}.")
        shown = maps.flatten(1).var(dim=1).argsort(descending=True)[:channels]
        for col, channel in enumerate(shown.tolist()):
            ax = fig.add_subplot(grid[row, col + 1])
            ax.imshow(maps[channel].numpy(), cmap="gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"ch {channel}", fontsize=7)
            if col == 0:
                c, h, w = maps.shape
                ax.set_ylabel(f"{name}\n{c}×{h}×{w}", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_age_probabilities(probabilities, age_values, true_ages, images=None, ncols: int = 2,
                           title: str = "What EVR outputs: a distribution over the age labels"):
    """EVR's softmax over the labels for a few faces, with its expectation (eq. 1) and the true age (02).

    probabilities: [k, n] (softmax of the age logits); age_values: [n]; true_ages: [k];
    images: optional [k, 3, H, W], each drawn to the left of its distribution.
    """
    plt = _plt()
    probabilities = torch.as_tensor(probabilities).detach().cpu().double()
    values = torch.as_tensor(age_values).detach().cpu().double()
    k = probabilities.shape[0]
    ncols = max(1, min(ncols, k))
    nrows = -(-k // ncols)
    per_face = 2 if images is not None else 1
    fig, axes = plt.subplots(nrows, ncols * per_face, figsize=(4.6 * ncols, 2.4 * nrows), squeeze=False,
                             gridspec_kw={"width_ratios": ([1, 3.2] if images is not None else [1]) * ncols})
    for i in range(nrows * ncols):
        row, col = divmod(i, ncols)
        ax = axes[row, col * per_face + per_face - 1]
        if images is not None:
            axes[row, col * per_face].axis("off")
        if i >= k:
            ax.axis("off")
            continue
        if images is not None:
            axes[row, col * per_face].imshow(as_image(images[i]))
        expected = float(probabilities[i] @ values)
        ax.bar(values.numpy(), probabilities[i].numpy(), width=1.0, color="tab:blue", alpha=0.7)
        ax.axvline(float(true_ages[i]), color="black", linewidth=1.2, label=f"true {int(true_ages[i])}")
        ax.axvline(expected, color="tab:red", linestyle="--", linewidth=1.2, label=f"EVR {expected:.1f}")
        ax.set_xlim(float(values.min()) - 1, float(values.max()) + 1)
        ax.set_xlabel("age label (years)")
        ax.set_ylabel("probability")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
