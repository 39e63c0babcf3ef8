"""What every plot shares: matplotlib imported on first use, a figure and axes, a tensor as an image."""

from __future__ import annotations

import torch


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _axes(ax, figsize=(6, 4)):
    if ax is not None:
        return ax.figure, ax
    return _plt().subplots(figsize=figsize)


def as_image(image: torch.Tensor):
    """[3, H, W] uint8 or float in [0, 1] -> a numpy [H, W, 3] array for imshow."""
    image = image.detach().cpu()
    if image.is_floating_point():
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return image.permute(1, 2, 0).numpy()
