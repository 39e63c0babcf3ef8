"""Plots the notebooks share. Every figure has axis labels and a title.

matplotlib is imported on first use, so the package itself does not need it.
Taught across the course; each function names its first notebook.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


def plot_schematic(boxes: Mapping[str, Sequence], arrows: Sequence[Sequence], title: str, ax=None,
                   figsize=(10, 3.4), fontsize: int = 9):
    """A box-and-arrow diagram of a method, e.g. RAPL's or the Siamese network's data flow (00_welcome).

    boxes: {name: (x, y, text)} or {name: (x, y, text, colour)}, centres in axes units
    [0, 1] x [0, 1]; arrows: [(from, to)] or [(from, to, label)], drawn from box edge to
    box edge. Returns the figure; the axes are hidden, the title is kept.
    """
    fig, ax = _axes(ax, figsize)
    drawn = {}
    for name, spec in boxes.items():
        if len(spec) not in (3, 4):
            raise ValueError(f"boxes[{name!r}] must be (x, y, text) or (x, y, text, colour), got {spec!r}.")
        x, y, text = spec[:3]
        colour = spec[3] if len(spec) == 4 else "#dde8f5"
        drawn[name] = ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, transform=ax.transAxes,
                              bbox={"boxstyle": "round,pad=0.45", "facecolor": colour, "edgecolor": "#4a5a70"})
    for arrow in arrows:
        if len(arrow) not in (2, 3):
            raise ValueError(f"each arrow must be (from, to) or (from, to, label), got {arrow!r}.")
        source, target = arrow[:2]
        for end in (source, target):
            if end not in drawn:
                raise ValueError(f"arrow {arrow!r} names {end!r}, which is not a box; boxes are {sorted(drawn)}.")
        ax.annotate("", xy=(0.5, 0.5), xycoords=drawn[target], xytext=(0.5, 0.5), textcoords=drawn[source],
                    arrowprops={"arrowstyle": "-|>", "color": "#4a5a70", "lw": 1.3, "shrinkA": 0, "shrinkB": 0,
                                "patchA": drawn[source].get_bbox_patch(), "patchB": drawn[target].get_bbox_patch()})
        if len(arrow) == 3:  # the label sits beside a steep arrow and above a flat one
            (x0, y0), (x1, y1) = boxes[source][:2], boxes[target][:2]
            steep = abs(y1 - y0) > abs(x1 - x0)
            ax.text((x0 + x1) / 2 + (0.012 if steep else 0.0), (y0 + y1) / 2 + (0.0 if steep else 0.035), arrow[2],
                    ha="left" if steep else "center", va="center" if steep else "bottom", fontsize=fontsize - 1,
                    style="italic", color="#4a5a70", transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.set_title(title)
    return fig


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


def plot_parameter_counts(counts: Mapping[str, int], removed: Sequence[str] = (), ax=None,
                          title: str = "Parameters per part of the network"):
    """Horizontal bars of parameter counts in millions, top to bottom in the order given (03_backbone_ir50).

    Parts named in ``removed`` (e.g. the stage POSTER++ cuts off) are drawn hatched in grey.
    """
    fig, ax = _axes(ax, (7, 0.45 * len(counts) + 1.2))
    names = list(counts)
    millions = [counts[name] / 1e6 for name in names]
    colours = ["lightgrey" if name in removed else "tab:blue" for name in names]
    bars = ax.barh(range(len(names)), millions, color=colours, edgecolor="dimgrey")
    for bar, name in zip(bars, names):
        if name in removed:
            bar.set_hatch("//")
    for y, (name, value) in enumerate(zip(names, millions)):
        ax.text(value, y, f" {value:.2f} M" if value >= 0.01 else f" {counts[name]:,}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xlim(0, max(millions) * 1.2 if millions else 1)
    ax.set_xlabel("parameters (millions)")
    ax.set_title(title)
    fig.tight_layout()
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
