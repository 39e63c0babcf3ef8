"""The exercise checks of notebooks 03-05 and their plotting helpers.

Each check passes a correct solution written here independently (a formula or a plain
loop) and catches plausible mistakes; the notebooks' own solution cells pass too. The
plotting helpers are checked for what they draw, not only that they run.
"""

import json
import math
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from agekit import exercises  # noqa: E402
from agekit.models import AgeReweighting  # noqa: E402
from agekit.models.ir import BottleneckIR  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


# ----------------------------------------------------------------------------- 03: output size of a convolution


def conv_size_by_formula(size, kernel, stride, padding):
    return math.floor((size + 2 * padding - kernel) / stride) + 1


def test_conv_output_size_hand_examples():
    assert conv_size_by_formula(112, 3, 2, 1) == 56  # the first unit of every IR stage
    assert conv_size_by_formula(7, 3, 2, 1) == 4  # rounds down: (7 + 2 - 3) / 2 + 1 = 4
    assert conv_size_by_formula(14, 3, 2, 0) == 6


def test_conv_output_size_accepts_a_correct_solution(capsys):
    exercises.check_conv_output_size(conv_size_by_formula)
    assert capsys.readouterr().out.startswith("Correct:")


@pytest.mark.parametrize("mistake", [
    lambda size, k, s, p: math.ceil((size + 2 * p - k) / s) + 1,  # rounds up
    lambda size, k, s, p: (size + p - k) // s + 1,  # pads one side only
    lambda size, k, s, p: (size + 2 * p - k) / s + 1,  # no rounding at all
    lambda size, k, s, p: size // s,  # ignores the kernel and padding
])
def test_conv_output_size_catches_mistakes(mistake):
    with pytest.raises(AssertionError, match="round down"):
        exercises.check_conv_output_size(mistake)


# ----------------------------------------------------------------------------- 03: parameters of a unit


def unit_parameters_by_layers(in_channels, depth):
    """Layer by layer: BN(in) 2c, conv 3x3 in->depth, PReLU, conv 3x3 depth->depth, BN(depth), shortcut."""
    layers = [2 * in_channels, 9 * in_channels * depth, depth, 9 * depth * depth, 2 * depth]
    if in_channels != depth:
        layers += [in_channels * depth, 2 * depth]  # 1x1 conv + BN on the shortcut
    return sum(layers)


def test_bottleneck_parameters_hand_example():
    # 64 -> 64: 128 + 36864 + 64 + 36864 + 128 = 74048, no shortcut weights (max-pool)
    assert unit_parameters_by_layers(64, 64) == 74048
    unit = BottleneckIR(64, 64, stride=1)
    assert sum(p.numel() for p in unit.parameters()) == 74048


def test_bottleneck_parameters_accepts_a_correct_solution(capsys):
    exercises.check_bottleneck_parameters(unit_parameters_by_layers)
    assert capsys.readouterr().out.startswith("Correct:")


@pytest.mark.parametrize("mistake", [
    lambda c, d: 2 * c + 9 * c * d + d + 9 * d * d + 2 * d,  # forgets the shortcut's conv and BN
    lambda c, d: unit_parameters_by_layers(c, d) + 2 * c + 2 * d,  # counts BN running statistics
    lambda c, d: unit_parameters_by_layers(c, d) + 2 * d,  # gives the 3x3 convolutions a bias
    lambda c, d: unit_parameters_by_layers(c, d) + (c * d + 2 * d) * (c == d),  # a 1x1 conv on every shortcut
])
def test_bottleneck_parameters_catches_mistakes(mistake):
    with pytest.raises(AssertionError, match="BatchNorm"):
        exercises.check_bottleneck_parameters(mistake)


# ----------------------------------------------------------------------------- 04 and 05: existing checks


def references_by_sample_loop(features, pred_ages, true_ages, label_values):
    best = {}
    for index, (a, a_hat) in enumerate(zip(true_ages.tolist(), pred_ages.tolist())):
        if a not in best or abs(a - a_hat) < best[a][0]:
            best[a] = (abs(a - a_hat), index)
    return features[[best[age][1] for age in label_values.tolist()]]


def test_select_references_check_accepts_a_loop_and_catches_mistakes(capsys):
    exercises.check_select_references(references_by_sample_loop)
    assert capsys.readouterr().out.startswith("Correct:")

    def largest_error(features, pred, true, values):  # argmax instead of argmin
        rows = [torch.nonzero(true == v).flatten() for v in values.tolist()]
        return torch.stack([features[r[(true[r] - pred[r]).abs().argmax()]] for r in rows])

    def signed_error(features, pred, true, values):  # argmin of (true - pred), not |true - pred|
        rows = [torch.nonzero(true == v).flatten() for v in values.tolist()]
        return torch.stack([features[r[(true[r] - pred[r]).argmin()]] for r in rows])

    def by_position(features, pred, true, values):  # row k taken from sample k
        return features[: len(values)]

    for mistake in (largest_error, signed_error, by_position):
        with pytest.raises(AssertionError, match="smallest"):
            exercises.check_select_references(mistake)


def age_weights_by_loop(references, p):
    n, c = references.shape
    weights = torch.empty(c, n)
    for j in range(c):
        for k in range(n):
            weights[j, k] = 1.0 / (1.0 + math.exp(-float(references[k, j]) * float(p[k])))  # eqs. 4-5
    return weights


def test_age_weights_check_accepts_a_loop_and_catches_mistakes():
    exercises.check_age_weights(age_weights_by_loop)
    with pytest.raises(AssertionError, match="differ"):
        exercises.check_age_weights(lambda r, p: torch.sigmoid(r.T) * p)  # p outside the sigmoid
    with pytest.raises(AssertionError):
        exercises.check_age_weights(lambda r, p: torch.sigmoid(r.T * p[0]))  # one p for every age


def test_reweighting_check_accepts_a_loop_and_catches_mistakes():
    def reweight_by_loop(x, references, p):
        weights = age_weights_by_loop(references, p)
        out = torch.empty(x.shape[0], weights.shape[0], weights.shape[1])
        for i in range(x.shape[0]):
            out[i] = x[i, :, None] * weights  # eq. 6
        return out

    exercises.check_reweighting(reweight_by_loop)
    with pytest.raises(AssertionError, match="shape"):
        exercises.check_reweighting(lambda x, r, p: x @ torch.sigmoid(r.T * p))  # sums over channels
    with pytest.raises(AssertionError, match="differ"):
        exercises.check_reweighting(lambda x, r, p: x[:, :, None] * (r.T * p)[None])  # forgets the sigmoid


def _solutions(notebook: str) -> dict:
    namespace = {"torch": torch}
    cells = json.loads((NOTEBOOKS / notebook).read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if "solution" in cell.get("metadata", {}).get("tags", []):
            exec("".join(cell["source"]), namespace)
    return namespace


@pytest.mark.parametrize("notebook, checks", [
    ("03_backbone_ir50.ipynb", {"conv_output_size": "check_conv_output_size",
                                "bottleneck_parameters": "check_bottleneck_parameters"}),
    ("04_reference_selection.ipynb", {"select_references_by_label": "check_select_references"}),
    ("05_age_reweighting.ipynb", {"age_weights": "check_age_weights", "reweight": "check_reweighting"}),
])
def test_the_notebook_solutions_pass_their_checks(notebook, checks, capsys):
    namespace = _solutions(notebook)
    for function, check in checks.items():
        getattr(exercises, check)(namespace[function])
    assert capsys.readouterr().out.count("Correct:") == len(checks)


# ----------------------------------------------------------------------------- plotting helpers


def test_feature_maps_show_the_most_varied_channels():
    from agekit.viz import plot_feature_maps

    maps = torch.zeros(5, 4, 4)
    maps[3, 0, 0] = 10.0  # the most varied channel
    maps[1, :2] = 1.0  # the second
    fig = plot_feature_maps(torch.zeros(3, 16, 16, dtype=torch.uint8), {"stage 1": maps}, channels=2, title="t")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["input 16×16", "ch 3", "ch 1"]
    assert fig.axes[1].get_ylabel() == "stage 1\n5×4×4"
    with pytest.raises(ValueError, match="stage_maps"):
        plot_feature_maps(torch.zeros(3, 8, 8), {"bad": torch.zeros(2, 2)})


def test_parameter_counts_bars_are_in_millions_and_removed_parts_grey():
    from agekit.viz import plot_parameter_counts

    fig = plot_parameter_counts({"a": 2_000_000, "b": 500_000, "tiny": 1920}, removed=("b",))
    ax = fig.axes[0]
    widths = [patch.get_width() for patch in ax.patches]
    assert widths == pytest.approx([2.0, 0.5, 0.00192])
    assert ax.patches[1].get_hatch() == "//" and ax.patches[0].get_hatch() is None
    assert [t.get_text() for t in ax.texts] == [" 2.00 M", " 0.50 M", " 1,920"]
    assert ax.get_xlabel() and ax.get_title()


def test_reference_selection_plot_rings_the_chosen_faces():
    from agekit.references import select_references
    from agekit.viz import plot_reference_selection

    true = torch.tensor([20, 20, 21, 21])
    pred = torch.tensor([23.0, 20.5, 21.0, 25.0])
    _, info = select_references(torch.eye(4), pred, true, [20, 21], return_info=True)
    fig = plot_reference_selection(true, pred, info.source_index)
    everyone, chosen = fig.axes[0].collections
    assert everyone.get_offsets().tolist() == [[20, 3], [20, 0.5], [21, 0], [21, 4]]
    assert chosen.get_offsets().tolist() == [[20, 0.5], [21, 0]]


def test_age_weights_figure_draws_sigmoid_of_r_transposed_times_p():
    from agekit.widgets import age_weights_figure

    generator = torch.Generator().manual_seed(0)
    references, p = torch.randn(5, 3, generator=generator), torch.randn(5, generator=generator)
    fig = age_weights_figure(references, p, age_values=[10, 11, 13, 14, 20])
    image = fig.axes[0].images[0]
    expected = age_weights_by_loop(references, p)
    assert torch.allclose(torch.as_tensor(image.get_array().data), expected, atol=1e-6)
    assert image.get_clim() == (0.0, 1.0)
    assert fig.axes[0].get_xlabel() == "age label" and fig.axes[0].get_title()
    with pytest.raises(ValueError, match="one value per age"):
        age_weights_figure(references, torch.ones(4))


def test_age_weights_explorer_redraws_when_p_changes():
    from agekit.widgets import age_weights_explorer

    references = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    box = age_weights_explorer(references, age_values=[20, 21, 22, 23, 24, 25])
    (scale, band_p), band, picture, caption = box.children[0].children, box.children[1], box.children[2], box.children[3]
    before = picture.value
    scale.value = 0.0  # every p_k = 0: all weights one half
    assert picture.value != before
    assert caption.value.startswith("p = 0 ×")
    flat = picture.value
    band_p.value = 3.0  # still scaled by 0: the picture stays the same
    assert picture.value == flat
    assert band.value == (21, 23)
    with pytest.raises(ValueError, match="age_values"):
        age_weights_explorer(references, age_values=[1, 2])


def test_age_reweighting_used_by_the_figure_starts_at_ones():
    # the widget's "starting p" is the module's default, so the lesson's first picture is W = sigmoid(R^T)
    references = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(AgeReweighting(4).p.data, torch.ones(4))
    assert torch.allclose(AgeReweighting(4).age_weights(references), age_weights_by_loop(references, torch.ones(4)))
