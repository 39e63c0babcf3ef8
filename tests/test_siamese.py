"""SiameseNet (Jeong et al., 2018): one shared network, age and gender embeddings, multi-task loss."""

import pytest
import torch
from torch import nn

from agekit.losses import revised_contrastive_loss
from agekit.models.siamese import SiameseNet, SiameseOutput, siamese_loss


def batch(b=4, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(b, 3, size, size, generator=gen)
    ages = torch.tensor([20, 23, 41, 60, 35, 36, 70, 18][:b])
    genders = torch.tensor([0, 1, 1, 0, 0, 1, 0, 1][:b])
    return images, ages, genders


def test_shapes_with_gender():
    torch.manual_seed(0)
    net = SiameseNet("ir_small")
    images, _, _ = batch()
    out = net(images)
    assert isinstance(out, SiameseOutput)
    assert out.age_embedding.shape == (4, 70)
    assert out.gender_embedding.shape == (4, 10)
    assert out.features.shape == (4, 64) and net.out_channels == 64


def test_shapes_without_gender_and_custom_sizes():
    torch.manual_seed(0)
    net = SiameseNet("ir_small", age_dim=16, gender=False, widths=(8, 16, 32))
    out = net(batch()[0])
    assert out.gender_embedding is None and net.gender_embedding is None
    assert out.age_embedding.shape == (4, 16) and out.features.shape == (4, 32)
    assert not any("gender" in name for name, _ in net.named_parameters())


def test_embeddings_are_linear_maps_of_the_pooled_features():
    torch.manual_seed(0)
    net = SiameseNet("ir_small").eval()
    images, _, _ = batch()
    out = net(images)
    # features = global average pool of the backbone map; in eval mode dropout is the identity
    assert torch.allclose(out.features, net.backbone(images).mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(out.age_embedding, out.features @ net.age_embedding.weight.T + net.age_embedding.bias,
                          atol=1e-5)
    assert torch.allclose(out.gender_embedding, net.gender_embedding(out.features), atol=1e-6)
    # in training mode dropout (p = 0.5) perturbs the embeddings but not the features
    net.train()
    torch.manual_seed(1)
    noisy = net(images)
    assert not torch.allclose(noisy.age_embedding, out.age_embedding)


def test_backward_reaches_the_backbone_and_loss_is_sum_of_parts():
    torch.manual_seed(0)
    net = SiameseNet("ir_small")
    images, ages, genders = batch()
    total, parts = siamese_loss(net(images), ages, genders, margin=3)
    assert set(parts) == {"age", "gender", "total"}  # the contract of rapl_loss: detached parts and "total"
    assert not any(part.requires_grad for part in parts.values()) and parts["total"].item() == total.item()
    assert total.item() == pytest.approx(parts["age"].item() + parts["gender"].item(), rel=1e-6)
    total.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    first_conv = net.backbone.input_layer[0].weight.grad
    assert first_conv.abs().sum() > 0


def test_age_only_model_trains_on_age():
    torch.manual_seed(0)
    net = SiameseNet("ir_small", gender=False)
    images, ages, genders = batch()
    out = net(images)
    total, parts = siamese_loss(out, ages, genders)
    assert "gender" not in parts  # no gender embedding: no gender term
    assert total.item() == pytest.approx(revised_contrastive_loss(out.age_embedding, ages, 3).item(), rel=1e-6)


def test_a_few_steps_fit_one_batch():
    torch.manual_seed(0)
    net = SiameseNet("ir_small", dropout=0.0)
    images, ages, genders = batch(b=8)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        total, _ = siamese_loss(net(images), ages, genders, margin=3)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        losses.append(total.item())
    assert losses[-1] < 0.5 * losses[0]


def test_same_seed_same_numbers():
    images = batch()[0]
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(SiameseNet("ir_small").eval()(images).age_embedding)
    assert torch.equal(outs[0], outs[1])


def test_embed_matches_forward_and_restores_mode():
    torch.manual_seed(0)
    net = SiameseNet("ir_small")
    images = batch(b=8)[0]
    embedded = net.embed(images, batch_size=3)
    assert net.training
    net.eval()
    with torch.no_grad():
        assert torch.allclose(embedded, net(images).age_embedding, atol=1e-5)


def test_module_backbone_and_bad_arguments():
    class Tiny(nn.Module):
        out_channels = 6

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3)

        def forward(self, x):
            return self.conv(x)

    net = SiameseNet(Tiny(), age_dim=4, gender_dim=2)
    out = net(torch.randn(2, 3, 8, 8))
    assert out.age_embedding.shape == (2, 4) and out.gender_embedding.shape == (2, 2)
    with pytest.raises(TypeError, match="out_channels"):
        SiameseNet(nn.Sequential(nn.Conv2d(3, 4, 3)))
    with pytest.raises(TypeError, match="nowhere to go"):
        SiameseNet(Tiny(), widths=(8, 16, 32))
    with pytest.raises(ValueError, match="backbone must be one of"):
        SiameseNet("resnet")
    with pytest.raises(ValueError, match="age_dim"):
        SiameseNet(Tiny(), age_dim=0)
    with pytest.raises(ValueError, match="dropout"):
        SiameseNet(Tiny(), dropout=1.5)
