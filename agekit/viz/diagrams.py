"""Diagrams: a schematic of boxes and arrows, and parameter counts of a model's parts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agekit.viz.base import _axes


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
