"""Plots of embeddings and matrices: 2-D and 3-D embeddings coloured by age or group, heatmaps."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from agekit.viz.base import _axes, _plt


def plot_heatmap(
    matrix, xlabel: str, ylabel: str, title: str, ax=None, xticklabels=None, cmap: str = "viridis", colorbar: str = ""
):
    """A labelled heatmap of a 2-D tensor, e.g. the reference map R or the age weights W (04, 05)."""
    fig, ax = _axes(ax, (8, 4))
    matrix = torch.as_tensor(matrix).detach().cpu().float()
    image = ax.imshow(matrix.numpy(), aspect="auto", cmap=cmap, interpolation="nearest")
    bar = fig.colorbar(image, ax=ax)
    if colorbar:
        bar.set_label(colorbar)
    if xticklabels is not None:
        step = max(1, len(xticklabels) // 12)
        ax.set_xticks(range(0, len(xticklabels), step))
        ax.set_xticklabels([str(x) for x in list(xticklabels)[::step]])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


def plot_embedding(points, values, ax=None, title: str = "Embedding", label: str = "age", cmap: str = "viridis",
                   xlabel: str = "component 1", ylabel: str = "component 2"):
    """A 2-D scatter coloured by a value (age) or a category (gender) (07, 08)."""
    fig, ax = _axes(ax, (5, 4.2))
    points = torch.as_tensor(points).detach().cpu().float()
    values = torch.as_tensor(values).detach().cpu()
    scatter = ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), c=values.numpy(), s=8, cmap=cmap, alpha=0.8)
    fig.colorbar(scatter, ax=ax).set_label(label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


def plot_age_embedding_3d(points, ages, ax=None, title: str = "Embedding and age", cmap: str = "viridis"):
    """A 2-D embedding [n, 2] lifted by age onto a vertical axis, as in Jeong et al.'s Fig. 10 (07).

    ``ax`` must be a 3-D axes (``fig.add_subplot(..., projection="3d")``); without one a figure is made.
    """
    if ax is None:
        fig = _plt().figure(figsize=(5.5, 4.5))
        ax = fig.add_subplot(projection="3d")
    elif getattr(ax, "name", "") != "3d":
        raise ValueError("ax must be a 3-D axes: create it with fig.add_subplot(..., projection='3d').")
    points = torch.as_tensor(points).detach().cpu().float()
    if points.dim() != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be a 2-D embedding [n, 2], got shape {tuple(points.shape)}.")
    ages = torch.as_tensor(ages).detach().cpu().float()
    ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), ages.numpy(), c=ages.numpy(), cmap=cmap, s=10)
    ax.set_xlabel("embedding dim 1")
    ax.set_ylabel("embedding dim 2")
    ax.set_zlabel("true age (years)")
    ax.set_title(title)
    return ax.figure


def plot_embedding_groups(points, groups, names: Mapping[int, str] | None = None, ax=None,
                          title: str = "Embedding", xlabel: str = "component 1", ylabel: str = "component 2"):
    """A 2-D scatter with one colour and a legend entry per category, e.g. gender 0/1 (08_embeddings).

    points: [n, 2]; groups: int [n]; names: {value: label} (default: male / female for 0 / 1);
    values without a name (e.g. -1, unknown) are drawn in grey.
    """
    fig, ax = _axes(ax, (5, 4.2))
    names = {0: "male", 1: "female"} if names is None else dict(names)
    points = torch.as_tensor(points).detach().cpu().float()
    groups = torch.as_tensor(groups).detach().cpu()
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    unnamed = torch.ones(len(groups), dtype=torch.bool)
    for number, (value, label) in enumerate(names.items()):
        chosen = groups == value
        unnamed &= ~chosen
        ax.scatter(points[chosen, 0].numpy(), points[chosen, 1].numpy(), s=8, alpha=0.6,
                   color=colours[number % len(colours)], label=f"{label} ({int(chosen.sum())})")
    if bool(unnamed.any()):
        ax.scatter(points[unnamed, 0].numpy(), points[unnamed, 1].numpy(), s=8, alpha=0.4, color="tab:gray",
                   label=f"other ({int(unnamed.sum())})")
    ax.legend(fontsize=8, markerscale=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig
