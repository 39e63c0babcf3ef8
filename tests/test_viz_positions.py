"""RAPL Fig. 2 as a figure: every age label at its position, a missing age leaves no gap."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from agekit import viz  # noqa: E402


def _markers(ax):
    return [line for line in ax.get_lines() if line.get_marker() not in (None, "None", "")]


def test_one_marker_per_label_at_its_position():
    ages = {"AgeDB": [a for a in range(1, 102) if a != 3], "toy": [5, 2, 2, 9, 7, 5]}
    fig = viz.plot_age_positions(ages)
    try:
        assert fig._suptitle is not None and fig._suptitle.get_text()
        assert len(fig.axes) == 2
        for ax, values in zip(fig.axes, ([a for a in range(1, 102) if a != 3], [2, 5, 7, 9])):
            assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
            (line,) = _markers(ax)
            assert list(line.get_xdata()) == values                  # one marker per label, sorted
            assert list(line.get_ydata()) == list(range(len(values)))  # positions 0..n-1, no gap
        agedb = _markers(fig.axes[0])[0]
        assert agedb.get_ydata()[list(agedb.get_xdata()).index(4)] == 2  # Fig. 2: age 4 is position 2
    finally:
        plt.close(fig)


def test_missing_ages_are_named_and_complete_ranges_are_not():
    fig = viz.plot_age_positions({"gap": torch.tensor([1, 2, 4, 5, 8]), "full": torch.arange(14, 63)})
    try:
        notes = [[t.get_text() for t in ax.texts] for ax in fig.axes]
        assert notes[0] == ["no 3: 4 is position 2", "no 6: 8 is position 4", "no 7: 8 is position 4"]
        assert notes[1] == []
    finally:
        plt.close(fig)
