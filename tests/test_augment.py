"""Batch augmentation: each operation against an independent computation."""


import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from agekit.data import BatchAugment, FaceDataset, to_float
from agekit.data.augment import grayscale, rotate, sharpen


def _images(b=4, size=16, seed=0):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_grayscale_is_luma():
    x = _images()
    gray = grayscale(x)
    expected = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        assert torch.allclose(gray[:, c], expected)


def test_rotation_by_90_degrees_is_a_transpose_flip():
    x = _images(b=2, size=8)
    turned = rotate(x, torch.tensor([90.0, -90.0]))
    assert torch.allclose(turned[0], torch.rot90(x[0], 1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(turned[1], torch.rot90(x[1], -1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(rotate(x, torch.zeros(2)), x, atol=1e-6)


def test_sharpness_matches_pil():
    x = (_images(b=1, size=12) * 255).round() / 255
    for factor in (0.0, 0.5, 1.7):
        ours = sharpen(x, torch.tensor([factor]))[0]
        pil = Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        theirs = np.asarray(ImageEnhance.Sharpness(pil).enhance(factor)).astype(np.float32) / 255
        assert np.abs(ours.permute(1, 2, 0).numpy() - theirs).max() <= 1.5 / 255


def test_probabilities_zero_and_one():
    x = _images()
    off = BatchAugment(hflip=0, vflip=0, gray=0, rotation=0, sharpness=0)
    assert torch.equal(off(x, torch.Generator().manual_seed(0)), x)
    flip = BatchAugment(hflip=1, vflip=0, gray=0, rotation=0, sharpness=0)
    assert torch.equal(flip(x, torch.Generator().manual_seed(0)), x.flip(-1))
    both = BatchAugment(hflip=1, vflip=1, gray=1, rotation=0, sharpness=0)
    assert torch.allclose(both(x, torch.Generator().manual_seed(0)), grayscale(x.flip(-1).flip(-2)))


def test_reproducible_and_mixed_per_sample():
    x = _images(b=64)
    aug = BatchAugment(hflip=0.5, vflip=0, gray=0, rotation=0, sharpness=0)
    a = aug(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(7)))
    flipped = [(torch.equal(a[i], x[i].flip(-1))) for i in range(64)]
    assert 10 < sum(flipped) < 54  # about half, drawn per sample
    assert all(flipped[i] or torch.equal(a[i], x[i]) for i in range(64))
    full = BatchAugment()(x, torch.Generator().manual_seed(1))
    assert full.shape == x.shape and 0 <= full.min() and full.max() <= 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="hflip"):
        BatchAugment(hflip=1.5)
    with pytest.raises(ValueError, match="float"):
        BatchAugment()(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_dataset_fast_path_equals_per_sample_access():
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    ages = torch.arange(10) + 20
    ds = FaceDataset(images, ages, genders=torch.tensor([0, 1] * 5))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    first = next(iter(loader))
    batch = next(ds.batches(4))
    assert torch.equal(first[0], batch.images) and torch.equal(first[1], batch.ages)
    shuffled = list(ds.batches(3, shuffle=True, generator=torch.Generator().manual_seed(0)))
    seen = torch.cat([b.index for b in shuffled])
    assert sorted(seen.tolist()) == list(range(10)) and len(shuffled) == ds.num_batches(3) == 4
    assert len(list(ds.batches(3, drop_last=True))) == 3
    assert torch.equal(to_float(images[:1]) * 255, images[:1].float())
    assert ds.subset(torch.tensor([2, 5])).ages.tolist() == [22, 25]
    assert not FaceDataset(images, ages).has_gender


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(images=torch.zeros(3, 3, 8, 8, dtype=torch.uint8), ages=[1, 2]), "Lengths do not match"),
        (dict(images=torch.zeros(2, 1, 8, 8, dtype=torch.uint8), ages=[1, 2]), r"\[N, 3, H, W\]"),
        (dict(images=torch.zeros(2, 3, 8, 8), ages=[1, 2]), "uint8"),
        (dict(images=torch.zeros(2, 3, 8, 8, dtype=torch.uint8), ages=[1.0, float("nan")]), "NaN"),
        (dict(images=torch.zeros(2, 3, 8, 8, dtype=torch.uint8), ages=[1, 2], genders=[0, 2]), "genders"),
    ],
)
def test_dataset_bad_input(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        FaceDataset(**kwargs)


@pytest.mark.parametrize("angle", [30.0, -17.0, 4.0])
def test_black_nearest_rotation_is_pils_as_torchvision_calls_it(angle):
    """torchvision's RandomRotation on a PIL image calls Image.rotate(angle, NEAREST, fillcolor=0)."""
    x = (_images(b=1, size=32) * 255).round() / 255
    ours = rotate(x, torch.tensor([angle]), fill="zeros", mode="nearest")[0].permute(1, 2, 0).numpy()
    pil = Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    theirs = np.asarray(pil.rotate(angle, resample=Image.NEAREST, fillcolor=0)).astype(np.float32) / 255
    same = (np.abs(ours - theirs) < 1e-6).all(-1)
    assert same.mean() >= 0.995  # a pixel whose source lies exactly between two may round the other way
    if abs(angle) > 10:
        assert (theirs.sum(-1) == 0).mean() > 0.05  # black corners, not replicated edges


def test_rapl_authors_preset_has_their_code_parameters():
    from agekit.data.augment import AUGMENTATIONS, augmentation

    theirs = augmentation("rapl_authors")
    # data_loader.py: RandomGrayscale(0.1), RandomHorizontalFlip(0.2), RandomRotation(degrees=30),
    # RandomAdjustSharpness(0.2) (p = 0.5 by default), RandomVerticalFlip(0.2)
    assert (theirs.gray, theirs.hflip, theirs.vflip) == (0.1, 0.2, 0.2)
    assert (theirs.rotation, theirs.rotation_degrees, theirs.rotation_fill, theirs.rotation_mode) == \
        (1.0, 30.0, "zeros", "nearest")
    assert (theirs.sharpness, theirs.sharpness_range) == (0.5, (0.2, 0.2))
    assert augmentation() == BatchAugment() and augmentation("agekit") is not AUGMENTATIONS["agekit"]
    with pytest.raises(ValueError, match="rapl_authors"):
        augmentation("autoaugment")
    # every image is rotated: with angles spread over [-30, 30], nearly all get black corners
    x = _images(b=64, size=24, seed=3) * 0.8 + 0.2
    out = theirs(x, torch.Generator().manual_seed(0))
    black_corner = (out[:, :, 0, 0].sum(1) == 0) | (out[:, :, 0, -1].sum(1) == 0)
    assert black_corner.float().mean() > 0.8


def test_trainer_uses_the_named_augmentation():
    from agekit.config import apply_overrides, preset
    from agekit.training.trainer import Trainer

    config = apply_overrides(preset("smoke", "rapl"), {"data.augmentation": "rapl_authors"})
    assert Trainer(config, progress=False).augment.rotation_fill == "zeros"
    assert Trainer(preset("smoke", "rapl"), progress=False).augment == BatchAugment()
