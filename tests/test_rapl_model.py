"""RAPL's model parts (heads, eqs. 4-6, the position head), RAPLNet's Table 3 variants and rapl_loss."""

import math

import pytest
import torch
from torch import nn

from agekit.data.labels import AgeLabels
from agekit.models import (
    VARIANTS,
    AgeReweighting,
    EVRHead,
    GenderHead,
    PositionHead,
    RAPLNet,
    RegressionHead,
    rapl_loss,
)

LABELS = AgeLabels(torch.tensor([1, 2, 4, 5, 7, 9]))  # n = 6, age 3 missing as in AgeDB


def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def test_reweighting_matches_a_triple_loop():
    generator = torch.Generator().manual_seed(0)
    b, c, n = 3, 4, 5
    x, references = torch.randn(b, c, generator=generator), torch.randn(n, c, generator=generator)
    module = AgeReweighting(n)
    with torch.no_grad():
        module.p.copy_(torch.randn(n, generator=generator))
    got = module(x, references)
    assert got.shape == (b, c, n)
    weights = module.age_weights(references)
    assert weights.shape == (c, n)
    for j in range(c):
        for k in range(n):
            w = _sigmoid(float(references[k, j]) * float(module.p.detach()[k]))  # eqs. 4-5 with R permuted
            assert weights[j, k].item() == pytest.approx(w, rel=1e-5)
            for i in range(b):
                assert got[i, j, k].item() == pytest.approx(float(x[i, j]) * w, rel=1e-5, abs=1e-7)  # eq. 6


def test_reweighting_initialisation():
    references = torch.randn(3, 2)
    assert torch.equal(AgeReweighting(3).p.data, torch.ones(3))
    assert torch.allclose(AgeReweighting(3).age_weights(references), torch.sigmoid(references.t()))
    assert torch.equal(AgeReweighting(3, init=0.0).age_weights(references), torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="one row per age label"):
        AgeReweighting(4)(torch.randn(1, 2), references)
    with pytest.raises(ValueError, match=r"\[batch, 2\]"):
        AgeReweighting(3)(torch.randn(1, 5), references)


def test_position_head_matches_a_loop_with_the_same_weights():
    generator = torch.Generator().manual_seed(1)
    b, c, n = 2, 3, 4
    head = PositionHead(c, n)
    x_hat = torch.randn(b, c, n, generator=generator)
    got = head(x_hat)
    assert got.shape == (b, n)
    a_w, a_b = head.age_fc.weight.detach()[0], head.age_fc.bias.detach()[0]
    p_w, p_b = head.position_fc.weight.detach(), head.position_fc.bias.detach()
    for i in range(b):
        per_channel = [sum(float(x_hat[i, j, k]) * float(a_w[k]) for k in range(n)) + float(a_b) for j in range(c)]
        for m in range(n):
            want = sum(per_channel[j] * float(p_w[m, j]) for j in range(c)) + float(p_b[m])
            assert got[i, m].item() == pytest.approx(want, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match=r"\[batch, 3, 4\]"):
        head(torch.randn(b, n, c))


def test_evr_head_is_eq1_over_its_own_logits():
    generator = torch.Generator().manual_seed(2)
    head = EVRHead(5, LABELS.values)
    x = torch.randn(3, 5, generator=generator)
    age, logits = head(x)
    assert logits.shape == (3, 6) and age.shape == (3,)
    for i in range(3):
        weight, bias = head.fc.weight.detach(), head.fc.bias.detach()
        row = [sum(float(x[i, j]) * float(weight[m, j]) for j in range(5)) + float(bias[m]) for m in range(6)]
        total = sum(math.exp(v) for v in row)
        want = sum(label * math.exp(v) / total for label, v in zip(LABELS.to_list(), row))
        assert age[i].item() == pytest.approx(want, rel=1e-5)
        assert logits[i].tolist() == pytest.approx(row, rel=1e-5, abs=1e-6)


def test_regression_and_gender_heads():
    head = RegressionHead(4, initial_age=30.0)
    with torch.no_grad():
        head.fc.weight.zero_()
    age, logits = head(torch.randn(5, 4))
    assert logits is None and torch.equal(age, torch.full((5,), 30.0))
    assert GenderHead(4)(torch.randn(5, 4)).shape == (5, 2)
    with pytest.raises(ValueError, match=r"\[batch, 4\]"):
        GenderHead(4)(torch.randn(5, 3))


EXPECTED_PARTS = {
    "FC": (False, False, False),  # (age logits, gender logits, position logits)
    "EVR": (True, False, False),
    "EVR+GP": (True, True, False),
    "EVR+RAPL": (True, False, True),
    "EVR+RAPL+GP": (True, True, True),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_table3_variant_trains_one_step(variant):
    torch.manual_seed(0)
    model = RAPLNet.from_variant(variant, LABELS, backbone="ir_small")
    assert model.variant == variant
    images = torch.randn(4, 3, 32, 32)
    ages = torch.tensor([1, 4, 9, 5])
    references = torch.randn(LABELS.num_ages, model.num_channels)
    out = model(images, references=references)
    has_logits, has_gender, has_position = EXPECTED_PARTS[variant]
    assert out.age.shape == (4,) and out.features.shape == (4, 64)
    assert (out.age_logits is not None) == has_logits
    assert (out.gender_logits is not None) == has_gender
    assert (out.position_logits is not None) == has_position
    total, parts = rapl_loss(out, ages, torch.tensor([0, 1, 1, 0]), LABELS.to_positions(ages))
    assert set(parts) == {"age", "total"} | ({"gender"} if has_gender else set()) | ({"position"} if has_position else set())
    total.backward()
    stem = model.backbone.input_layer[0].weight.grad
    assert stem is not None and torch.isfinite(stem).all() and stem.abs().sum() > 0
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    if has_position:
        assert model.reweighting.p.grad.abs().sum() > 0


def test_position_branch_needs_references():
    torch.manual_seed(1)
    model = RAPLNet.from_variant("EVR+RAPL+GP", LABELS, backbone="ir_small")
    out = model(torch.randn(2, 3, 32, 32))  # epoch 1: no references yet
    assert out.position_logits is None
    rapl_loss(out, torch.tensor([1, 2]), torch.tensor([0, 1]))[0].backward()
    assert model.reweighting.p.grad is None
    with pytest.raises(ValueError, match="no position logits"):
        model.position_age(out)
    with pytest.raises(ValueError, match=r"references must be \[6, 64\]"):
        model(torch.randn(2, 3, 32, 32), references=torch.randn(6, 32))


def test_position_age_and_age_value_buffer():
    model = RAPLNet.from_variant("EVR+RAPL", LABELS, backbone="ir_small", widths=(4, 8, 8))
    assert torch.equal(model.state_dict()["age_values"], LABELS.values)
    logits = torch.tensor([[0.0, 0, 5, 0, 0, 0], [0, 0, 0, 0, 0, 9]])
    out = model(torch.randn(2, 3, 32, 32), references=torch.randn(6, 8))
    out.position_logits = logits
    assert model.position_age(out).tolist() == [4, 9]  # positions 2 and 5 are ages 4 and 9


def test_fc_head_starts_at_the_mean_label():
    model = RAPLNet.from_variant("FC", LABELS, backbone="ir_small")
    assert model.age_head.fc.bias.item() == pytest.approx(sum(LABELS.to_list()) / 6)


def test_construction_errors():
    with pytest.raises(ValueError, match="variant must be one of") as error:
        RAPLNet.from_variant("EVR+SIAMESE", LABELS, backbone="ir_small")
    assert "EVR+RAPL+GP" in str(error.value)
    assert RAPLNet.from_variant("IR50+EVR+GP", LABELS, backbone="ir_small").variant == "EVR+GP"
    with pytest.raises(ValueError, match="head must be one of"):
        RAPLNet(LABELS, backbone="ir_small", head="svm")
    with pytest.raises(TypeError, match="out_channels"):
        RAPLNet(LABELS, backbone=nn.Identity())
    with pytest.raises(TypeError, match="only apply"):
        RAPLNet(LABELS, backbone=nn.Conv2d(3, 8, 3), widths=(1, 2, 3))
    # Any module with an integer out_channels works as a backbone (nn.Conv2d has one).
    assert RAPLNet(LABELS, backbone=nn.Conv2d(3, 8, 3))(torch.randn(2, 3, 8, 8)).features.shape == (2, 8)


def _log_softmax(row, index):
    return row[index] - math.log(sum(math.exp(v) for v in row))


def test_rapl_loss_is_eq8_by_hand():
    ages = torch.tensor([1, 9, 4])
    positions = LABELS.to_positions(ages)
    out = RAPLNet.from_variant("EVR+RAPL+GP", LABELS, backbone="ir_small")(
        torch.randn(3, 3, 32, 32), references=torch.randn(6, 64)
    )
    genders = torch.tensor([1, -1, 0])
    total, parts = rapl_loss(out, ages, genders, positions, lam=0.5, mu=2.0)
    l_age = sum(abs(float(a) - float(p)) for a, p in zip(ages, out.age.detach())) / 3
    g = out.gender_logits.tolist()
    l_gender = -(_log_softmax(g[0], 1) + _log_softmax(g[2], 0)) / 2  # the unknown one is left out
    q = out.position_logits.tolist()
    l_position = -sum(_log_softmax(q[i], int(positions[i])) for i in range(3)) / 3
    assert parts["age"].item() == pytest.approx(l_age, rel=1e-5)
    assert parts["gender"].item() == pytest.approx(l_gender, rel=1e-5)
    assert parts["position"].item() == pytest.approx(l_position, rel=1e-5)
    assert total.item() == pytest.approx(l_age + 0.5 * l_gender + 2.0 * l_position, rel=1e-5)
    assert parts["total"].item() == pytest.approx(total.item())


@pytest.mark.parametrize("genders", [None, torch.tensor([-1, -1])])
def test_rapl_loss_without_gender_labels(genders):
    model = RAPLNet.from_variant("EVR+RAPL+GP", LABELS, backbone="ir_small")
    out = model(torch.randn(2, 3, 32, 32), references=torch.randn(6, 64))
    ages = torch.tensor([2, 7])
    total, parts = rapl_loss(out, ages, genders, LABELS.to_positions(ages))
    assert "gender" not in parts
    assert total.item() == pytest.approx(parts["age"].item() + parts["position"].item(), rel=1e-6)
    total.backward()  # the gender head stays in the graph with a zero gradient
    assert torch.equal(model.gender_head.fc.weight.grad, torch.zeros(2, 64))
    with pytest.raises(ValueError, match="needs positions"):
        rapl_loss(out, ages, genders)
