"""plot_margin_clusters: Jeong et al.'s Fig. 7, the pairs an age margin pulls together and pushes apart."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from agekit.viz import plot_margin_clusters  # noqa: E402


def _arcs(ax):
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]
    pulled = [line for line in lines if line.get_linestyle() == "-"]
    pushed = [line for line in lines if line.get_linestyle() == "--"]
    return pulled, pushed


def test_every_pair_is_one_arc_pulled_within_the_margin_and_pushed_beyond_it():
    fig = plot_margin_clusters(torch.tensor([20, 21, 22, 24, 25]), margin=3)
    ax = fig.axes[0]
    pulled, pushed = _arcs(ax)
    # gaps <= 3: 20-21, 20-22, 21-22, 21-24, 22-24, 22-25, 24-25; beyond: 20-24, 20-25, 21-25
    assert (len(pulled), len(pushed)) == (7, 3)
    assert all(line.get_ydata().max() > 0 for line in pulled), "pulled pairs arch above the axis"
    assert all(line.get_ydata().min() < 0 for line in pushed), "pushed pairs arch below it"
    assert ax.get_title() == "margin 3: 7 pairs pulled together, 3 pushed apart"
    assert ax.get_xlabel() and ax.get_ylabel()
    assert sorted(text.get_text() for text in ax.texts) == ["20", "21", "22", "24", "25"]
    plt.close(fig)


def test_the_margin_is_inclusive_and_positions_place_the_faces():
    fig, ax = plt.subplots()
    plot_margin_clusters([30, 33, 34], margin=3, positions=[0.0, 5.0, -5.0], ax=ax, title="learnt")
    pulled, pushed = _arcs(ax)
    assert (len(pulled), len(pushed)) == (2, 1)  # 30-33 (gap 3) and 33-34 pulled; 30-34 pushed
    assert sorted(pushed[0].get_xdata()[[0, -1]].tolist()) == [-5.0, 0.0], "arcs join the given positions"
    assert ax.get_title() == "learnt"
    plt.close(fig)


def test_one_place_per_face_and_no_negative_margin():
    with pytest.raises(ValueError, match="one place per face"):
        plot_margin_clusters([20, 21], margin=3, positions=[0.0])
    with pytest.raises(ValueError, match="must not be negative"):
        plot_margin_clusters([20, 21], margin=-1)
    plt.close("all")
