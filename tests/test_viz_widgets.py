"""Plots carry a title and axis labels; widgets redraw their picture when a slider moves."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from agekit import viz, widgets  # noqa: E402
from agekit.metrics import error_by_age  # noqa: E402


def _labelled(fig):
    """Every data axis of the figure has a title (or the figure a suptitle) and both axis labels."""
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert axes
    for ax in axes:
        assert ax.get_title() or (fig._suptitle is not None and fig._suptitle.get_text())
        assert ax.get_xlabel() and ax.get_ylabel()
    plt.close(fig)


@pytest.mark.parametrize(
    "make",
    [
        lambda: viz.plot_age_distribution(torch.randint(1, 90, (200,)), torch.randint(0, 2, (200,))),
        lambda: viz.plot_history([{"epoch": 1, "loss": 3.0, "val_mae": 9.0},
                                  {"epoch": 2, "loss": 2.0, "val_mae": 8.0}]),
        lambda: viz.plot_error_by_age({"EVR": error_by_age(torch.rand(50) * 80, torch.randint(1, 80, (50,)))}),
        lambda: viz.plot_heatmap(torch.rand(4, 6), "age", "channel", "R", xticklabels=list(range(6))),
        lambda: viz.plot_embedding(torch.randn(30, 2), torch.randint(1, 90, (30,)), title="PCA"),
        lambda: viz.plot_comparison({"FC": [8.0, 8.5], "EVR": [7.0, 7.2]}, baseline=15.0),
        lambda: widgets.contrastive_loss_figure(100.0, 3.0),
    ],
)
def test_plots_are_labelled(make):
    _labelled(make())


def test_face_explorer_redraws_the_same_person_older():
    box = widgets.face_explorer(image_size=48)
    picture, controls = box.children
    age_slider = controls.children[0]
    assert age_slider.description == "age"
    young = bytes(picture.value)
    age_slider.value = 80
    old = bytes(picture.value)
    assert old != young and old.startswith(b"\x89PNG")
    age_slider.value = 30
    assert bytes(picture.value) == young  # the same person and age draw the same picture


def test_loss_explorer_redraws_when_q_or_margin_move():
    box = widgets.contrastive_loss_explorer()
    q_slider, margin_slider = box.children[0].children
    picture = box.children[1]
    first = bytes(picture.value)
    q_slider.value = 10.0
    second = bytes(picture.value)
    margin_slider.value = 6
    assert len({first, second, bytes(picture.value)}) == 3


def test_png_bytes_scales_up():
    from io import BytesIO

    from PIL import Image

    image = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    picture = Image.open(BytesIO(widgets.png_bytes(image, scale=3)))
    assert picture.size == (21, 15)
    assert torch.equal(torch.as_tensor(list(picture.getpixel((0, 0)))), image[:, 0, 0].long())


def test_plot_history_shows_the_trainers_keys_by_default():
    from agekit.config import preset
    from agekit.training import train

    result = train(preset("smoke", "rapl"), progress=False)
    fig = viz.plot_history(result.history)
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "val mae"]
    for ax, key in zip(fig.axes, ("loss", "val_mae")):
        assert list(ax.lines[0].get_ydata()) == [row[key] for row in result.history]
    plt.close(fig)


def test_multi_line_captions_do_not_overlap_the_next_row():
    faces = torch.rand(10, 3, 16, 16)
    fig = viz.plot_predictions(faces, torch.arange(10) + 20, torch.arange(10) + 21.5, torch.arange(10) + 22)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.images]
    below = axes[5]  # first face of the second row
    for ax in axes[:5]:
        assert "\n" in ax.get_title()
    top_of_second_row = below.get_window_extent(renderer).y1
    for ax in axes[5:]:
        caption = ax.title.get_window_extent(renderer)
        assert caption.y0 >= ax.get_window_extent(renderer).y1 - 1  # each caption sits above its own face
    for ax in axes[:5]:
        assert ax.get_window_extent(renderer).y0 > top_of_second_row  # rows do not overlap
    caption = axes[5].title.get_window_extent(renderer)
    assert caption.y1 <= axes[0].get_window_extent(renderer).y0 + 1, "a second-row caption runs into the row above"
    plt.close(fig)
