"""Plots of training runs and their results.

Loss and MAE curves, comparisons of methods, confidence scores and paired
differences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from agekit.viz.base import _axes, _plt


def plot_history(history: Sequence[Mapping], keys: Sequence[str] = ("loss", "val_mae"), title: str = "Training"):
    """One panel per key of a trainer's per-epoch history (keys as the trainer records them: "loss",
    "loss_age", "train_mae", "val_mae", "val_cs5", "lr", ...). Keys no epoch has are left out."""
    plt = _plt()
    keys = [k for k in keys if any(k in row for row in history)]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4.2 * max(1, len(keys)), 3.2), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        epochs = [row.get("epoch", i + 1) for i, row in enumerate(history) if key in row]
        ax.plot(epochs, [row[key] for row in history if key in row], marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("_", " "))
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_comparison(results: Mapping[str, Sequence[float]], ylabel: str = "test MAE (years)", ax=None,
                    title: str = "Comparison", baseline: float | None = None):
    """Bar chart of mean +/- std over seeds per method, with an optional baseline line (09_ablations)."""
    fig, ax = _axes(ax, (8, 3.8))
    names = list(results)
    values = [torch.tensor(results[n], dtype=torch.float64) for n in names]
    means = [float(v.mean()) for v in values]
    stds = [float(v.std()) if len(v) > 1 else 0.0 for v in values]
    ax.bar(range(len(names)), means, yerr=stds, capsize=4, color="tab:blue", alpha=0.8)
    if baseline is not None:
        ax.axhline(baseline, color="tab:red", linestyle="--", label="predict the median")
        ax.legend()
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.set_xlabel("method")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_learning_curves(histories: Mapping[str, Sequence[Mapping]], keys: Sequence[str] = ("train_mae", "val_mae"),
                         baseline: float | None = None, baseline_label: str = "predict the median",
                         title: str = "Learning curves"):
    """Several runs' per-epoch histories overlaid, one panel per key (02_metrics_and_evr, 09_ablations).

    histories: {run name: trainer history (one dict per epoch)}; ``baseline`` draws a dashed
    horizontal line on every panel (e.g. the median predictor's MAE).
    """
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.3), squeeze=False, sharey=True)
    for ax, key in zip(axes.flat, keys):
        for name, history in histories.items():
            rows = [row for row in history if key in row]
            ax.plot([row["epoch"] for row in rows], [row[key] for row in rows], marker="o", markersize=3, label=name)
        if baseline is not None:
            ax.axhline(baseline, color="tab:red", linestyle="--", linewidth=1, label=baseline_label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key.replace("_", " ") + (" (years)" if key.endswith("mae") else ""))
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_rapl_history(history: Sequence[Mapping], baseline: float | None = None, title: str = "RAPL training"):
    """The three things to watch while RAPL trains (06_rapl_training).

    Left: the loss parts of eq. 8 per epoch (unweighted means; position starts in epoch 2);
    middle: training and validation MAE (and an optional baseline); right: the learning rate.
    """
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.9))
    epochs = [row["epoch"] for row in history]
    parts = (("loss", "total (eq. 8)", "black"), ("loss_age", "age L1 (eq. 2)", "tab:blue"),
             ("loss_gender", "gender CE (eq. 3)", "tab:orange"), ("loss_position", "position CE (eq. 7)", "tab:green"))
    for key, label, colour in parts:
        rows = [row for row in history if key in row]
        if rows:
            axes[0].plot([r["epoch"] for r in rows], [r[key] for r in rows], marker="o", markersize=3, label=label,
                         color=colour)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("mean loss per face (log scale)")
    axes[0].set_title("loss parts")
    for key, label in (("train_mae", "training (augmented)"), ("val_mae", "validation")):
        rows = [row for row in history if key in row]
        axes[1].plot([r["epoch"] for r in rows], [r[key] for r in rows], marker="o", markersize=3, label=label)
    if baseline is not None:
        axes[1].axhline(baseline, color="tab:red", linestyle="--", linewidth=1, label="predict the median")
    axes[1].set_ylabel("MAE (years)")
    axes[1].set_title("mean absolute error")
    axes[2].plot(epochs, [row["lr"] for row in history], marker="o", markersize=3, color="tab:purple")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("learning rate (log scale)")
    axes[2].set_title("learning rate (MultiStepLR)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[:2]:  # below the panels, where no curve can hide behind them
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confidence_scores(tolerances: Sequence[float], whole, draws, sample=None, paper: Mapping | None = None,
                           n_faces: int = 10, ax=None, title: str = "Confidence score (eq. 12)"):
    """Confidence score against the tolerance t: the whole test set, and random draws of a few faces (06).

    whole: [T] scores on all test faces; draws: [D, T] scores of D random draws of ``n_faces``
    faces (their 5-95 % range is shaded); sample: [T] one such draw, as the paper reports;
    paper: {t: score} from RAPL's Table 5, for comparison.
    """
    fig, ax = _axes(ax, (7, 3.8))
    t = torch.as_tensor(tolerances, dtype=torch.float64)
    draws = torch.as_tensor(draws, dtype=torch.float64)
    low, high = torch.quantile(draws, 0.05, dim=0), torch.quantile(draws, 0.95, dim=0)
    ax.fill_between(t.numpy(), low.numpy(), high.numpy(), color="tab:blue", alpha=0.2,
                    label=f"5-95 % of {len(draws)} draws of {n_faces} faces")
    ax.plot(t.numpy(), torch.as_tensor(whole, dtype=torch.float64).numpy(), marker="o", color="tab:blue",
            label="whole test set")
    if sample is not None:
        ax.plot(t.numpy(), torch.as_tensor(sample, dtype=torch.float64).numpy(), marker="s", linestyle=":",
                color="tab:orange", label=f"one draw of {n_faces} faces")
    if paper:
        ax.scatter(list(paper), list(paper.values()), marker="*", s=90, color="tab:red", zorder=3,
                   label="RAPL Table 5 (AgeDB, 10 faces)")
    ax.set_xlabel("tolerance t (years)")
    ax.set_ylabel("confidence score (%)")
    ax.set_ylim(-3, 103)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_paired_differences(differences: Mapping[str, Sequence[float]], ax=None,
                            xlabel: str = "difference in test MAE (years)",
                            title: str = "Paired differences over seeds"):
    """One row per comparison: each seed's difference as a dot, their mean as a bar, zero as a line (09_ablations).

    differences: {"A - B": [d_seed0, d_seed1, ...]}, d = score of A minus score of B on the
    same seed. The bar spans mean +/- one sample standard deviation (none for one seed);
    a difference is only worth reading when the dots sit on one side of zero.
    """
    fig, ax = _axes(ax, (7.5, 0.45 * len(differences) + 1.4))
    names = list(differences)
    for row, name in enumerate(names):
        values = torch.tensor(differences[name], dtype=torch.float64)
        mean = float(values.mean())
        std = float(values.std()) if len(values) > 1 else 0.0
        ax.errorbar(mean, row, xerr=std, fmt="|", markersize=14, color="tab:blue", capsize=4,
                    label="mean ± std" if row == 0 else None)
        ax.scatter(values.numpy(), [row] * len(values), s=22, color="tab:orange", zorder=3,
                   label="one seed" if row == 0 else None)
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
