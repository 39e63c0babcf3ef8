"""Plots of ages and age errors.

Age distributions, RAPL's age positions and margins, errors by age,
predicted against true age, reference selection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from agekit.viz.base import _axes, _plt


def plot_age_distribution(ages, genders=None, ax=None, title: str = "Age distribution"):
    """Histogram of whole-year ages, split by gender when given (01_synthetic_faces)."""
    fig, ax = _axes(ax, (7, 3.5))
    ages = torch.as_tensor(ages)
    bins = torch.arange(int(ages.min()), int(ages.max()) + 2).numpy() - 0.5
    if genders is None:
        ax.hist(ages.numpy(), bins=bins, color="tab:blue")
    else:
        genders = torch.as_tensor(genders)
        for value, name, color in ((0, "male", "tab:blue"), (1, "female", "tab:orange")):
            ax.hist(ages[genders == value].numpy(), bins=bins, alpha=0.6, label=name, color=color)
        ax.legend()
    ax.set_xlabel("age (years)")
    ax.set_ylabel("number of faces")
    ax.set_title(title)
    return fig


def plot_age_positions(ages_by_name: Mapping[str, Sequence[int]], title: str = "Ages to relative age positions (RAPL Fig. 2)"):
    """Each data set's age labels against their positions, one panel per data set (01_synthetic_faces).

    ``ages_by_name`` maps a data set's name to its training ages (any order, repeats allowed).
    The labels are ``AgeLabels.from_ages(ages).values`` (sorted, distinct) and label ``l_i`` sits at
    position ``i``: one marker per label. An age missing inside the range gets a dotted line and
    a note, and leaves no gap in the positions (Fig. 2: AgeDB has no 3, so 4 is position 2).
    """
    from agekit.data.labels import AgeLabels

    plt = _plt()
    fig, axes = plt.subplots(1, len(ages_by_name), figsize=(3.6 * len(ages_by_name), 3.4), squeeze=False)
    for ax, (name, ages) in zip(axes.flat, ages_by_name.items()):
        values = AgeLabels.from_ages(torch.as_tensor(ages)).values
        positions = torch.arange(len(values))
        ax.plot(values.numpy(), positions.numpy(), marker=".", linestyle="none", color="tab:blue",
                label=f"{len(values)} labels")
        present = set(values.tolist())
        missing = [a for a in range(int(values[0]), int(values[-1]) + 1) if a not in present]
        for age in missing:
            after = int(torch.searchsorted(values, age))  # the position the next older age takes
            ax.axvline(age, color="tab:red", linestyle=":", lw=1)
            ax.annotate(f"no {age}: {int(values[after])} is position {after}", (age, after),
                        xytext=(0.35, 0.12), textcoords="axes fraction", fontsize=8, color="tab:red",
                        arrowprops={"arrowstyle": "->", "color": "tab:red", "lw": 0.8})
        ax.set_xlabel("age label (years)")
        ax.set_ylabel("position")
        ax.set_title(f"{name}: {int(values[0])}-{int(values[-1])} -> 0-{len(values) - 1}", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_error_by_age(rows_by_name: Mapping[str, Sequence[Mapping]], ax=None, title: str = "Error by age"):
    """MAE per age bin for one or more models; rows from ``metrics.error_by_age`` (02_metrics_and_evr)."""
    fig, ax = _axes(ax, (7, 3.5))
    for name, rows in rows_by_name.items():
        ax.plot([r["age"] for r in rows], [r["mae"] for r in rows], marker=".", label=name)
    ax.set_xlabel("true age (years)")
    ax.set_ylabel("mean absolute error (years)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_margin_clusters(ages, margin: float, positions=None, ax=None, title: str | None = None,
                         xlabel: str = "position along the embedding"):
    """Jeong et al.'s Fig. 7: which pairs an age margin pulls together and which it pushes apart (07).

    ages: [n] whole years; positions: [n] where each face sits along one embedding axis
    (default: at its age). Every pair i < j is an arc between its two faces: a solid blue
    arc above the axis when |a_i - a_j| <= margin (the same class: the loss pulls the two
    together), a dashed orange arc below it otherwise (different: pushed apart until they
    pay little). Each face is labelled with its age. Returns the figure.
    """
    fig, ax = _axes(ax, (6, 3.2))
    ages = torch.as_tensor(ages).detach().cpu().flatten()
    places = ages.float() if positions is None else torch.as_tensor(positions).detach().cpu().float().flatten()
    if len(places) != len(ages):
        raise ValueError(f"positions must give one place per face: {len(places)} places for {len(ages)} ages.")
    if margin < 0:
        raise ValueError(f"margin must not be negative, got {margin}.")
    span = max(float(places.max() - places.min()) if len(places) > 1 else 0.0, 1.0)
    t = torch.linspace(0, 1, 50)
    counts = {True: 0, False: 0}
    for i in range(len(ages)):
        for j in range(i + 1, len(ages)):
            same = abs(int(ages[i]) - int(ages[j])) <= margin
            start, end = float(places[i]), float(places[j])
            height = 0.15 + 0.85 * abs(end - start) / span     # longer pairs arch higher
            xs = start + (end - start) * t
            ys = (1 if same else -1) * height * torch.sin(torch.pi * t)
            ax.plot(xs.numpy(), ys.numpy(), color="tab:blue" if same else "tab:orange", ls="-" if same else "--",
                    lw=1.4, alpha=0.8, label=("same class: pulled together" if same else "different: pushed apart")
                    if counts[same] == 0 else None)
            counts[same] += 1
    ax.axhline(0, color="0.6", lw=0.8, zorder=0)
    ax.scatter(places.numpy(), torch.zeros(len(places)).numpy(), s=40, color="black", zorder=3)
    placed: list[float] = []
    for age, place in zip(ages.tolist(), places.tolist()):
        level = sum(abs(place - other) < 0.02 * span for other in placed)   # faces at one point: stack labels
        placed.append(place)
        ax.annotate(str(int(age)), (place, 0), xytext=(0, -14 - 11 * level), textcoords="offset points",
                    ha="center", va="top", fontsize=9, fontweight="bold",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    ax.set_ylim(-1.25, 1.25)
    ax.set_yticks([])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pushed    pulled")
    ax.set_title(title if title is not None else
                 f"margin {margin:g}: {counts[True]} pairs pulled together, {counts[False]} pushed apart")
    if counts[True] or counts[False]:
        ax.legend(fontsize=8, loc="upper left")
    return fig


def plot_reference_selection(true_ages, pred_ages, source_index, ax=None,
                             title: str = "Algorithm 1: the smallest error of each age"):
    """Every training face as (true age, |true - predicted|), the reference chosen for each age ringed (04).

    true_ages, pred_ages: [K]; source_index: int64 [n], the sample chosen per age label
    (``ReferenceInfo.source_index``).
    """
    own_figure = ax is None
    fig, ax = _axes(ax, (8, 3.6))
    true_ages = torch.as_tensor(true_ages).detach().cpu().double()
    errors = (true_ages - torch.as_tensor(pred_ages).detach().cpu().double()).abs()
    chosen = torch.as_tensor(source_index).detach().cpu().long().unique()
    ax.scatter(true_ages.numpy(), errors.numpy(), s=6, color="tab:grey", alpha=0.45, label="training face")
    ax.scatter(true_ages[chosen].numpy(), errors[chosen].numpy(), s=28, facecolors="none", edgecolors="tab:red",
               linewidths=1.2, label="chosen reference")
    ax.set_xlabel("true age (years)")
    ax.set_ylabel("|true - predicted| (years)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # Beside the axes, not inside them: inside, the legend hid faces with large errors at the youngest ages.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    if own_figure:
        fig.tight_layout()  # make room for the legend
    return fig


def plot_pred_vs_true(true_ages, preds_by_name: Mapping[str, torch.Tensor], title: str = "Predicted against true age",
                      size: float = 3.6):
    """One scatter panel per model: predicted age over true age, with the ideal diagonal (02, 06)."""
    plt = _plt()
    true_ages = torch.as_tensor(true_ages).detach().cpu().double()
    fig, axes = plt.subplots(1, len(preds_by_name), figsize=(size * len(preds_by_name), size), squeeze=False,
                             sharex=True, sharey=True)
    low, high = float(true_ages.min()), float(true_ages.max())
    for ax, (name, pred) in zip(axes.flat, preds_by_name.items()):
        pred = torch.as_tensor(pred).detach().cpu().double()
        ax.scatter(true_ages.numpy(), pred.numpy(), s=5, alpha=0.35)
        ax.plot([low, high], [low, high], color="black", linewidth=1, label="perfect")
        ax.set_xlabel("true age (years)")
        ax.set_ylabel("predicted age (years)")
        ax.set_title(f"{name} (MAE {float((pred - true_ages).abs().mean()):.2f})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_aspect("equal")
    axes.flat[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
