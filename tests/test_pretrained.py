"""Loading IR-50 face-recognition weights in both key layouts, and refusing what does not fit.

The checkpoints are made here from an independent definition of face.evoLVe's
four-stage IR backbone with its output layer, so dropping stage 4 and the output
layer is exercised.
"""

import pickle

import pytest
import torch
from torch import nn

from agekit.models import IR50, IRSmall, RAPLNet, load_ir50_weights


class RefUnit(nn.Module):
    """face.evoLVe's bottleneck_IR."""

    def __init__(self, c_in, depth, stride):
        super().__init__()
        if c_in == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(c_in, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x):
        return self.shortcut_layer(x) + self.res_layer(x)


class RefBackbone(nn.Module):
    """face.evoLVe's Backbone(mode="ir"): input layer, four stages, output layer."""

    def __init__(self, units=(3, 4, 14, 3), widths=(64, 128, 256, 512), side=7, embedding=512):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0]))
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(widths[-1]),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(widths[-1] * side * side, embedding),
            nn.BatchNorm1d(embedding),
        )
        units_list, c_in = [], widths[0]
        for count, depth in zip(units, widths):
            for i in range(count):
                units_list.append(RefUnit(c_in, depth, 2 if i == 0 else 1))
                c_in = depth
        self.body = nn.Sequential(*units_list)
        self.stage_sizes = units

    def three_stages(self, x):
        return self.body[: sum(self.stage_sizes[:3])](self.input_layer(x))


def _randomise(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(int(torch.randint(1, 1000, (1,), generator=generator)))
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return model.eval()


def _small_reference(seed=0, widths=(16, 32, 64, 128)):
    return _randomise(RefBackbone(units=(1, 1, 2, 1), widths=widths, side=2, embedding=8), seed)


def _to_poster_pp(state, stage_sizes):
    """Rename body.N to POSTER++'s body1/body2/body3/body4, each stage numbered from 0."""
    starts = [sum(stage_sizes[:s]) for s in range(len(stage_sizes))]
    renamed = {}
    for key, value in state.items():
        if key.startswith("body."):
            _, index, rest = key.split(".", 2)
            stage = max(s for s in range(len(starts)) if starts[s] <= int(index))
            key = f"body{stage + 1}.{int(index) - starts[stage]}.{rest}"
        renamed[key] = value
    return renamed


def _save(state, path):
    torch.save(state, path)
    return path


def _assert_same_as_reference(model, reference, size=32):
    model.eval()
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key  # same names in the first three stages
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.allclose(model(x), reference.three_stages(x), atol=1e-6)


def test_face_evolve_layout_loads_and_drops_stage4_and_output_layer(tmp_path):
    reference = _small_reference()
    model = IRSmall()
    report = load_ir50_weights(model, _save(reference.state_dict(), tmp_path / "ir.pth"))
    _assert_same_as_reference(model, reference)
    assert report.layout == "face.evoLVe"
    assert report.loaded == len(model.state_dict())
    assert all(k.startswith(("body.4.", "output_layer.")) for k in report.dropped)
    assert "body.4.res_layer.1.weight" in report.dropped and "output_layer.3.weight" in report.dropped
    assert report.wrapper is None and report.stripped_prefix is None and report.kept_from_model == []
    assert "stage 4" in str(report) and "output layer" in str(report)


def test_wrapped_state_dict_with_module_prefix(tmp_path):
    reference = _small_reference(seed=1)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}, "epoch": 7}
    model = IRSmall()
    report = load_ir50_weights(model, _save(wrapped, tmp_path / "wrapped.pth"))
    _assert_same_as_reference(model, reference)
    assert report.wrapper == "state_dict" and report.stripped_prefix == "module."


def test_poster_pp_split_layout(tmp_path):
    reference = _small_reference(seed=2)
    split = _to_poster_pp(reference.state_dict(), reference.stage_sizes)
    assert "body3.1.res_layer.1.weight" in split and "body4.0.res_layer.1.weight" in split
    model = IRSmall()
    report = load_ir50_weights(model, _save(split, tmp_path / "poster_pp.pth"))
    _assert_same_as_reference(model, reference)
    assert report.layout == "POSTER++"
    assert any(k.startswith("body4.") for k in report.dropped)


def test_loads_into_a_raplnet_backbone(tmp_path):
    reference = _small_reference(seed=3)
    net = RAPLNet([20, 21, 22], backbone="ir_small")
    load_ir50_weights(net, _save(reference.state_dict(), tmp_path / "ir.pth"))
    _assert_same_as_reference(net.backbone, reference)


def test_old_checkpoint_without_batch_counters(tmp_path):
    reference = _small_reference(seed=4)
    state = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    report = load_ir50_weights(IRSmall(), _save(state, tmp_path / "old.pth"))
    assert report.kept_from_model and all(k.endswith("num_batches_tracked") for k in report.kept_from_model)
    assert "num_batches_tracked" in str(report)


def test_foreign_checkpoint_is_refused_listing_its_keys(tmp_path):
    foreign = {"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}
    with pytest.raises(ValueError, match="does not look like an IR-50") as error:
        load_ir50_weights(IRSmall(), _save(foreign, tmp_path / "resnet.pth"))
    assert "conv1.weight" in str(error.value) and "fc.weight" in str(error.value)


def test_missing_and_unexpected_keys_are_listed_and_nothing_is_loaded(tmp_path):
    reference = _small_reference(seed=5)
    state = dict(reference.state_dict())
    del state["body.1.res_layer.1.weight"]
    state["head.kernel"] = torch.zeros(8, 10)
    model = IRSmall()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as error:
        load_ir50_weights(model, _save(state, tmp_path / "broken.pth"))
    message = str(error.value)
    assert "body.1.res_layer.1.weight" in message and "missing" in message
    assert "head.kernel" in message and "no place" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_shape_mismatch_is_refused(tmp_path):
    wider = _small_reference(seed=6, widths=(16, 48, 64, 128))
    with pytest.raises(ValueError, match="shapes that disagree") as error:
        load_ir50_weights(IRSmall(), _save(wider.state_dict(), tmp_path / "wide.pth"))
    assert "body.1.res_layer.1.weight" in str(error.value)


def test_a_tensor_of_the_wrong_shape_is_counted_once(tmp_path):
    state = dict(_small_reference(seed=6).state_dict())
    state["body.1.res_layer.1.weight"] = torch.zeros(32, 16, 5, 5)  # right name, wrong kernel size
    with pytest.raises(ValueError) as error:
        load_ir50_weights(IRSmall(), _save(state, tmp_path / "one_bad.pth"))
    message = str(error.value)
    assert "shapes that disagree (1)" in message
    assert "missing" not in message and message.count("body.1.res_layer.1.weight") == 1


def test_a_whole_rapl_authors_model_gets_a_hint(tmp_path):
    inner = _to_poster_pp(_small_reference(seed=2).state_dict(), (1, 1, 2, 1))
    state = {f"backbone.{key}": value for key, value in inner.items()}
    state.update({"fc_age.weight": torch.zeros(5, 64), "fc_age.bias": torch.zeros(5), "parameter": torch.zeros(5)})
    with pytest.raises(ValueError, match="agekit convert rapl-authors"):
        load_ir50_weights(IRSmall(), _save(state, tmp_path / "authors.pt"))


class Pickled:
    def __init__(self):
        self.weights = torch.zeros(3)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "code.pth"
    torch.save({"model": Pickled()}, path)
    with pytest.raises(ValueError, match="pickled Python objects"):
        load_ir50_weights(IRSmall(), path)
    # A plain pickle, not a torch file, is refused the same way.
    with open(tmp_path / "plain.pkl", "wb") as handle:
        pickle.dump(Pickled(), handle, protocol=2)
    with pytest.raises(ValueError, match="pickled Python objects"):
        load_ir50_weights(IRSmall(), tmp_path / "plain.pkl")


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_ir50_weights(IRSmall(), tmp_path / "absent.pth")
    with pytest.raises(TypeError, match="IR backbone"):
        load_ir50_weights(nn.Linear(2, 2), tmp_path / "absent.pth")


def test_safetensors_file(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    reference = _small_reference(seed=7)
    path = tmp_path / "ir.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    model = IRSmall()
    load_ir50_weights(model, path)
    _assert_same_as_reference(model, reference)


@pytest.fixture(scope="module")
def full_reference():
    """A full face.evoLVe IR-50: 24 units, 512-channel stage 4, output layer 512*7*7 -> 512."""
    torch.manual_seed(0)
    reference = RefBackbone().eval()
    with torch.no_grad():  # make BN statistics matter
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return reference


@pytest.mark.parametrize("layout", ["face.evoLVe", "POSTER++"])
def test_full_size_ir50_both_layouts(tmp_path, full_reference, layout):
    state = full_reference.state_dict()
    if layout == "POSTER++":
        state = _to_poster_pp(state, full_reference.stage_sizes)
    model = IR50()
    report = load_ir50_weights(model, _save(state, tmp_path / "ir50.pth"))
    assert report.layout == layout
    assert report.loaded == len(model.state_dict()) == 7 + 21 * 13 + 2 * 6  # stem; 13 per unit; 6 per 1x1 shortcut
    dropped_units = {tuple(k.split(".")[:2]) for k in report.dropped if k.startswith("body")}
    if layout == "face.evoLVe":
        assert dropped_units == {("body", "21"), ("body", "22"), ("body", "23")}
    else:
        assert dropped_units == {("body4", "0"), ("body4", "1"), ("body4", "2")}
    assert sum(k.startswith("output_layer.") for k in report.dropped) == 12  # BN2d 5, Linear 2, BN1d 5
    _assert_same_as_reference(model, full_reference, size=16)
