"""Batch augmentation in pure torch, the set the RAPL paper trains with.

Horizontal and vertical flips, grayscale, rotation and sharpness, each applied to
a random subset of the batch with its own probability. Works on float images
[b, 3, H, W] in [0, 1] on any device; all random numbers are drawn on the CPU from
the given ``torch.Generator`` and then moved, so the same seed gives the same
augmentation on CPU and GPU.

The paper names the five operations without their parameters. Two named settings
(``data.augmentation``, :func:`augmentation`):

* ``agekit`` (the default): milder rotations with replicated edges, random
  sharpening or blurring, mostly horizontal flips; see :class:`BatchAugment`.
* ``rapl_authors``: what the authors' code does (torchvision transforms in their
  ``data_loader.py``): grayscale with probability 0.1, horizontal flip 0.2, a
  rotation by a uniform angle in [-30, 30] degrees on every image (nearest
  pixel, black corners), sharpness factor 0.2 with probability 0.5 (a factor
  below 1 blurs: 80 % of the way to the smoothed image) and vertical flip 0.2.
  They apply them in that order; here flips, grayscale, rotation and sharpness
  run in this module's order, which gives the same distribution of results
  (grayscale, sharpness and the flips commute with each other up to clipping,
  and a flip turns a rotation by an angle into one by the opposite angle, which
  is as likely).

Taught in ``notebooks/01_synthetic_faces.ipynb``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from agekit import _checks

# ITU-R 601 luma weights, as PIL and torchvision use for grayscale
_LUMA = (0.299, 0.587, 0.114)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """[b, 3, H, W] -> [b, 3, H, W] with all three channels set to the luma."""
    weights = torch.tensor(_LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True).expand_as(images)


def rotate(images: torch.Tensor, degrees: torch.Tensor, fill: str = "border", mode: str = "bilinear") -> torch.Tensor:
    """Rotate each image by its angle in degrees (counter-clockwise).

    images: [b, 3, H, W]; degrees: [b] -> [b, 3, H, W]. fill: "border" replicates
    the edges into the corners, "zeros" leaves them black (torchvision's default);
    mode: "bilinear" or "nearest" (torchvision's default) interpolation.
    """
    radians = degrees.to(images.device, images.dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode=fill, align_corners=False)


def sharpen(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Sharpness as PIL defines it: blend with a smoothed copy; factor 0 blurs, 1 keeps, 2 sharpens.

    images: [b, 3, H, W] in [0, 1]; factor: [b]. The one-pixel border is kept, as in PIL.
    """
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=images.device) / 13.0
    kernel = kernel.to(images.dtype).expand(3, 1, 3, 3)
    smooth = F.conv2d(images, kernel, padding=1, groups=3)
    smooth[..., 0, :], smooth[..., -1, :] = images[..., 0, :], images[..., -1, :]
    smooth[..., :, 0], smooth[..., :, -1] = images[..., :, 0], images[..., :, -1]
    factor = factor.to(images.device, images.dtype).view(-1, 1, 1, 1)
    return (smooth + factor * (images - smooth)).clamp(0.0, 1.0)


@dataclass
class BatchAugment:
    """The paper's augmentations with a probability each (set one to 0 to switch it off).

    rotation_degrees: the largest angle either way; rotation_fill: "border" or
    "zeros" (black corners); rotation_mode: "bilinear" or "nearest";
    sharpness_range: factors drawn uniformly from it.
    """

    hflip: float = 0.5
    vflip: float = 0.1
    gray: float = 0.2
    rotation: float = 0.5
    rotation_degrees: float = 15.0
    sharpness: float = 0.3
    sharpness_range: tuple[float, float] = (0.0, 2.0)
    rotation_fill: str = "border"
    rotation_mode: str = "bilinear"

    def __post_init__(self):
        for name in ("hflip", "vflip", "gray", "rotation", "sharpness"):
            _checks.probability(name, getattr(self, name))
        if not 0 <= self.rotation_degrees <= 180:
            raise ValueError(f"rotation_degrees must lie in 0..180, got {self.rotation_degrees}.")
        low, high = self.sharpness_range
        if not 0 <= low <= high:
            raise ValueError(f"sharpness_range must be (low, high) with 0 <= low <= high, got {self.sharpness_range}.")
        _checks.choice("rotation_fill", self.rotation_fill, ("border", "zeros"))
        _checks.choice("rotation_mode", self.rotation_mode, ("bilinear", "nearest"))

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """images: float [b, 3, H, W] in [0, 1] -> augmented copy, same shape and device."""
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"images must be float [b, 3, H, W] in [0, 1], got {images.dtype} {tuple(images.shape)}; "
                "convert uint8 batches with agekit.data.to_float first."
            )
        b = images.shape[0]
        # draw every random number first, on the CPU, in a fixed order
        draws = torch.rand(6, b, generator=generator)
        angles = (draws[4] * 2.0 - 1.0) * self.rotation_degrees
        low, high = self.sharpness_range
        factors = low + draws[5] * (high - low)
        chosen = [(d < p).to(images.device) for d, p in zip(draws[:4], (self.hflip, self.vflip, self.gray, self.rotation))]
        sharp_chosen = (torch.rand(b, generator=generator) < self.sharpness).to(images.device)

        out = images
        out = torch.where(chosen[0].view(-1, 1, 1, 1), out.flip(-1), out)
        out = torch.where(chosen[1].view(-1, 1, 1, 1), out.flip(-2), out)
        out = torch.where(chosen[2].view(-1, 1, 1, 1), grayscale(out), out)
        if bool(chosen[3].any()):
            out = torch.where(chosen[3].view(-1, 1, 1, 1),
                              rotate(out, angles, self.rotation_fill, self.rotation_mode), out)
        if bool(sharp_chosen.any()):
            out = torch.where(sharp_chosen.view(-1, 1, 1, 1), sharpen(out, factors), out)
        return out


# The named settings of ``data.augmentation`` (see the module docstring).
AUGMENTATIONS: dict[str, BatchAugment] = {
    "agekit": BatchAugment(),
    "rapl_authors": BatchAugment(hflip=0.2, vflip=0.2, gray=0.1, rotation=1.0, rotation_degrees=30.0,
                                 sharpness=0.5, sharpness_range=(0.2, 0.2), rotation_fill="zeros",
                                 rotation_mode="nearest"),
}


def augmentation(name: str = "agekit") -> BatchAugment:
    """A copy of the named setting: "agekit" (default) or "rapl_authors" (their code's parameters).

    Taught in ``notebooks/01_synthetic_faces.ipynb``.
    """
    return dataclasses.replace(AUGMENTATIONS[_checks.choice("augmentation", name, list(AUGMENTATIONS))])
