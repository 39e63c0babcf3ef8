"""Figures of lessons 04 and 06: the toy plot hides no face, the Fig. 4 captions say ages."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from agekit import viz  # noqa: E402
from agekit.references import select_references  # noqa: E402


def test_reference_selection_legend_covers_no_face():
    # lesson 04's toy example: two faces (20, 4.0) and (21, 4.1) sat under the legend when it was inside the axes
    true = torch.tensor([20, 20, 20, 21, 21, 21, 21, 22, 22, 23, 23, 23, 24, 24])
    pred = torch.tensor([22.5, 19.2, 24.0, 25.1, 21.8, 18.0, 23.0, 26.5, 19.9, 21.0, 26.2, 24.4, 22.9, 20.1])
    _, info = select_references(torch.eye(14), pred, true, [20, 21, 22, 23, 24], return_info=True)
    fig = viz.plot_reference_selection(true, pred, info.source_index)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    points = ax.transData.transform(torch.stack([true.double(), (true - pred).abs().double()], 1).numpy())
    assert not any(legend.contains(x, y) for x, y in points), "the legend hides a face"
    inside = ax.get_window_extent(renderer)
    assert all(inside.contains(x, y) for x, y in points), "every face is drawn inside the axes"
    plt.close(fig)


def test_prediction_captions_name_the_position_heads_age_not_a_position():
    faces = torch.rand(2, 3, 16, 16)
    fig = viz.plot_predictions(faces, torch.tensor([38, 25]), torch.tensor([27.7, 11.8]), torch.tensor([25, 7]))
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["true 38\nEVR age 27.7\nposition-head age 25", "true 25\nEVR age 11.8\nposition-head age 7"]
    assert not any("pos " in t for t in titles)
    plt.close(fig)
