"""Inception V3 in torchvision's layout, and loading state dicts saved in that layout.

torchvision is not needed: the reference names and shapes below are copied from
torchvision's ``Inception3`` (torchvision/models/inception.py), and its documented
parameter count for ``inception_v3`` with the auxiliary head and the 1000-class
classifier is 27,161,264. Without them (fc: 2048*1000 + 1000 = 2,049,000;
AuxLogits: 128*768 + 2*128 + 768*128*25 + 2*768 + 768*1000 + 1000 = 3,326,696)
the feature extractor has 21,785,568 parameters.
"""

import pytest
import torch
from torch import nn

from agekit.models.inception import MIN_INPUT_SIZE, InceptionV3, load_inception_v3_weights

TORCHVISION_SAMPLE = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_mean": (32,),
    "Conv2d_2a_3x3.conv.weight": (32, 32, 3, 3),
    "Conv2d_2b_3x3.conv.weight": (64, 32, 3, 3),
    "Conv2d_3b_1x1.conv.weight": (80, 64, 1, 1),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch1x1.conv.weight": (64, 192, 1, 1),
    "Mixed_5b.branch5x5_1.conv.weight": (48, 192, 1, 1),
    "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5c.branch_pool.conv.weight": (64, 256, 1, 1),
    "Mixed_5d.branch3x3dbl_3.bn.running_mean": (96,),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6a.branch3x3dbl_3.conv.weight": (96, 96, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6b.branch7x7_3.conv.weight": (192, 128, 7, 1),
    "Mixed_6c.branch7x7dbl_2.conv.weight": (160, 160, 7, 1),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch1x1.conv.weight": (320, 1280, 1, 1),
    "Mixed_7b.branch3x3_2a.conv.weight": (384, 384, 1, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3dbl_3b.bn.running_var": (384,),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "AuxLogits.conv0.conv.weight": (128, 768, 1, 1),
    "AuxLogits.conv1.conv.weight": (768, 128, 5, 5),
    "AuxLogits.fc.weight": (1000, 768),
    "fc.weight": (1000, 2048),
    "fc.bias": (1000,),
}


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def imagenet_like():
    """A full classifier in torchvision's layout, eval mode, with non-trivial BN statistics."""
    torch.manual_seed(1)
    model = InceptionV3(num_classes=1000, aux_logits=True).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    return model


@pytest.fixture(scope="module")
def saved(imagenet_like, tmp_path_factory):
    # the ported ImageNet file predates BN counters: leave num_batches_tracked out
    state = {k: v.clone() for k, v in imagenet_like.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("weights") / "inception_v3_google.pth"
    torch.save(state, path)
    return path, state


def test_key_names_and_shapes_follow_torchvision(imagenet_like):
    state = imagenet_like.state_dict()
    for key, shape in TORCHVISION_SAMPLE.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    assert count(imagenet_like) == 27_161_264
    assert len(state) == 580  # 94 conv+BN units * 6 keys (5 + num_batches_tracked) + 2 + 2 + 2 * 6 aux


def test_feature_extractor_is_the_classifier_minus_its_heads(imagenet_like):
    trunk = InceptionV3()
    assert count(trunk) == 21_785_568
    assert trunk.out_channels == 2048
    full = set(imagenet_like.state_dict())
    heads = {k for k in full if k.startswith(("fc.", "AuxLogits."))}
    assert set(trunk.state_dict()) == full - heads
    assert trunk.Conv2d_1a_3x3.bn.eps == pytest.approx(0.001)


@pytest.mark.parametrize("size, grid", [(75, 1), (107, 2)])
def test_forward_shape(size, grid):
    torch.manual_seed(0)
    model = InceptionV3().eval()
    with torch.no_grad():
        out = model(torch.randn(2 if size == 75 else 1, 3, size, size))
    assert out.shape == (2 if size == 75 else 1, 2048, grid, grid)
    assert torch.isfinite(out).all() and (out >= 0).all()  # ends in ReLU


def test_small_or_misshaped_inputs_are_refused():
    model = InceptionV3()
    with pytest.raises(ValueError, match=f"at least {MIN_INPUT_SIZE}"):
        model(torch.zeros(1, 3, MIN_INPUT_SIZE - 1, 120))
    with pytest.raises(ValueError, match=r"\[batch, 3, height, width\]"):
        model(torch.zeros(1, 1, 80, 80))
    with pytest.raises(ValueError, match="aux_logits=True needs num_classes"):
        InceptionV3(aux_logits=True)


def test_transform_input_matches_torchvision_formula():
    # torchvision: channel 0 -> x * (0.229 / 0.5) + (0.485 - 0.5) / 0.5; for x = 1: 0.458 - 0.03 = 0.428
    model = InceptionV3(transform_input=True)
    scaled = model._scale_input(torch.ones(1, 3, 2, 2))
    assert scaled[0, :, 0, 0].tolist() == pytest.approx([0.428, 0.448 - 0.088, 0.45 - 0.188])
    assert torch.equal(InceptionV3()._scale_input(torch.ones(1, 3, 2, 2)), torch.ones(1, 3, 2, 2))


def test_load_drops_heads_and_reproduces_features(imagenet_like, saved):
    path, state = saved
    torch.manual_seed(2)
    model = InceptionV3().eval()
    dropped = load_inception_v3_weights(model, path)
    assert dropped == sorted(k for k in state if k.startswith(("fc.", "AuxLogits.")))
    assert len(dropped) == 14
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, state[key]), key
    x = torch.randn(1, 3, 75, 75, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model(x), imagenet_like(x), atol=1e-5)
        assert imagenet_like.classify(x).shape == (1, 1000)


def test_load_keeps_heads_when_the_model_has_them(saved):
    path, state = saved
    model = InceptionV3(num_classes=1000, aux_logits=True)
    assert load_inception_v3_weights(model, path) == []
    assert torch.equal(model.fc.weight, state["fc.weight"])
    assert torch.equal(model.AuxLogits.fc.weight, state["AuxLogits.fc.weight"])


def test_load_into_a_siamese_backbone(saved):
    from agekit.models.siamese import SiameseNet

    path, state = saved
    net = SiameseNet(InceptionV3())
    load_inception_v3_weights(net, path)
    assert torch.equal(net.backbone.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])


def test_mismatches_fail_loudly(saved, tmp_path):
    _, state = saved
    broken = dict(state)
    del broken["Mixed_6b.branch7x7_2.conv.weight"]
    broken["Mixed_5b.extra.weight"] = torch.zeros(3)
    broken["Conv2d_1a_3x3.conv.weight"] = torch.zeros(32, 1, 3, 3)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    model = InceptionV3()
    before = model.Conv2d_2a_3x3.conv.weight.clone()
    with pytest.raises(ValueError) as error:
        load_inception_v3_weights(model, path)
    message = str(error.value)
    assert "missing keys: Mixed_6b.branch7x7_2.conv.weight" in message
    assert "unexpected keys: Mixed_5b.extra.weight" in message
    assert "Conv2d_1a_3x3.conv.weight (32, 1, 3, 3) vs (32, 3, 3, 3) expected" in message
    assert torch.equal(model.Conv2d_2a_3x3.conv.weight, before)  # nothing half-loaded


def test_pickled_code_and_wrong_targets_are_refused(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(nn.Linear(2, 2), path)  # a whole pickled module, not a state dict
    with pytest.raises(ValueError, match="pickled"):
        load_inception_v3_weights(InceptionV3(), path)
    with pytest.raises(FileNotFoundError):
        load_inception_v3_weights(InceptionV3(), tmp_path / "absent.pth")
    with pytest.raises(TypeError, match="InceptionV3"):
        load_inception_v3_weights(nn.Linear(2, 2), path)
