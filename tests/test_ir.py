"""IR backbones: shapes, parameter counts, face.evoLVe module names, the registry."""

import pytest
import torch

from agekit.models import IR, IR50, BottleneckIR, IRSmall, build_backbone, global_average_pool, list_backbones


def _count(module):
    return sum(p.numel() for p in module.parameters())


def _unit_params(c_in, depth):
    """Parameters of one bottleneck_IR unit, counted by hand."""
    res = 2 * c_in + c_in * depth * 9 + depth + depth * depth * 9 + 2 * depth  # BN, conv, PReLU, conv, BN
    shortcut = 0 if c_in == depth else c_in * depth + 2 * depth  # conv 1x1 + BN
    return res + shortcut


def test_ir50_shape_and_parameter_count():
    torch.manual_seed(0)
    model = IR50().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 256, 14, 14)
    assert model.out_channels == 256
    stem = 3 * 64 * 9 + 2 * 64 + 64
    by_hand = stem + sum(
        _unit_params(c_in if i == 0 else c, c)
        for c_in, c, units in [(64, 64, 3), (64, 128, 4), (128, 256, 14)]
        for i in range(units)
    )
    assert _count(model) == by_hand == 17_611_968


def test_ir50_keeps_face_evolve_module_names():
    keys = set(IR50().state_dict())
    for key in [
        "input_layer.0.weight",
        "input_layer.1.running_var",
        "input_layer.2.weight",
        "body.0.res_layer.0.weight",
        "body.0.res_layer.1.weight",
        "body.0.res_layer.2.weight",
        "body.0.res_layer.3.weight",
        "body.0.res_layer.4.bias",
        "body.3.shortcut_layer.0.weight",  # first unit of stage 2 widens 64 -> 128
        "body.3.shortcut_layer.1.running_mean",
        "body.7.shortcut_layer.0.weight",  # first unit of stage 3 widens 128 -> 256
        "body.20.res_layer.4.weight",  # the last unit kept
    ]:
        assert key in keys, key
    assert not any(k.startswith(("body.21.", "output_layer.")) for k in keys)
    assert not any(k.startswith("body.0.shortcut_layer") for k in keys)  # a MaxPool, no weights


def test_units_strides_and_shortcuts():
    model = IR50()
    strides = [unit.res_layer[3].stride[0] for unit in model.body]
    assert strides == [2, 1, 1, 2, 1, 1, 1, 2] + [1] * 13
    first = model.body[0].shortcut_layer
    assert isinstance(first, torch.nn.MaxPool2d)
    x = torch.randn(1, 64, 9, 9)
    assert torch.equal(first(x), x[:, :, ::2, ::2])  # MaxPool2d(1, 2) is a strided identity


def test_bottleneck_is_residual_plus_shortcut():
    torch.manual_seed(1)
    unit = BottleneckIR(8, 16, stride=2).eval()
    x = torch.randn(2, 8, 10, 10)
    want = unit.res_layer(x) + unit.shortcut_layer(x)
    assert torch.allclose(unit(x), want)
    assert unit(x).shape == (2, 16, 5, 5)


@pytest.mark.parametrize("size, side", [(32, 4), (64, 8)])
def test_small_ir_shapes(size, side):
    model = IRSmall()
    out = model(torch.randn(3, 3, size, size))
    assert out.shape == (3, 64, side, side)
    assert model.out_channels == 64 and model.units == (1, 1, 2)
    assert _count(model) == 151_472


def test_ir_family_arguments():
    model = IR(units=(2, 1), widths=(8, 24))
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 24, 4, 4)
    assert len(model.body) == 3 and model.out_channels == 24
    with pytest.raises(ValueError, match="units and widths"):
        IR(units=(1, 1), widths=(8, 16, 32))
    with pytest.raises(ValueError, match="at least 1"):
        IR(units=(0, 1), widths=(8, 16))
    with pytest.raises(ValueError, match=r"\[batch, channels, height, width\]"):
        model(torch.randn(3, 16, 16))


def test_registry():
    assert list_backbones() == ["inception_v3", "ir50", "ir_small"]
    small = build_backbone("ir_small", widths=(4, 8, 8))
    assert isinstance(small, IRSmall) and small.out_channels == 8
    with pytest.raises(ValueError, match="ir50") as error:
        build_backbone("resnet18")
    assert "inception_v3" in str(error.value) and "ir_small" in str(error.value)


def test_global_average_pool_is_the_spatial_mean():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    pooled = global_average_pool(x)
    assert pooled.shape == (2, 3)
    assert pooled[1, 2].item() == pytest.approx(sum(x[1, 2].flatten().tolist()) / 4)
