"""Backbones by name, and the pooling that turns their feature maps into features.

Every backbone maps images ``[b, 3, H, W]`` to a feature map ``[b, c, h, w]`` and
has an ``out_channels`` attribute (c). The models pool that map with
:func:`global_average_pool` into the features ``F: [b, c]`` of RAPL Sec. III-A.

    build_backbone("ir50")                       # IR-50 without stage 4, 112 px
    build_backbone("ir_small", widths=(8, 16, 32))  # the CPU preset, 32-64 px
    build_backbone("inception_v3")               # the Siamese baseline's network

Taught in ``notebooks/03_backbone_ir50.ipynb``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from agekit.config import BACKBONES
from agekit.models.ir import IR50, IRSmall


def _inception_v3(**kwargs) -> nn.Module:
    # Imported here so that the IR backbones work without the Inception module.
    from agekit.models.inception import InceptionV3

    return InceptionV3(**kwargs)


# The builder of each name in agekit.config.BACKBONES, the one list of backbones.
_BACKBONES: dict[str, Callable[..., nn.Module]] = dict(zip(BACKBONES, (IR50, IRSmall, _inception_v3), strict=True))


def list_backbones() -> list[str]:
    """The names :func:`build_backbone` accepts. Taught in ``notebooks/03_backbone_ir50.ipynb``."""
    return sorted(_BACKBONES)


def build_backbone(name: str, **kwargs) -> nn.Module:
    """Build the backbone called ``name``; ``kwargs`` go to its constructor.

    Returns a module mapping ``[b, 3, H, W] -> [b, out_channels, h, w]``.
    Taught in ``notebooks/03_backbone_ir50.ipynb``.
    """
    if not isinstance(name, str) or name not in _BACKBONES:
        raise ValueError(f"backbone must be one of {list_backbones()}, got {name!r}.")
    return _BACKBONES[name](**kwargs)


def global_average_pool(feature_map: torch.Tensor) -> torch.Tensor:
    """Average over the spatial positions: feature_map [b, c, h, w] -> features F [b, c].

    Taught in ``notebooks/03_backbone_ir50.ipynb``.
    """
    if feature_map.dim() != 4:
        raise ValueError(f"feature_map must be [batch, channels, height, width], got shape {tuple(feature_map.shape)}.")
    return feature_map.mean(dim=(2, 3))


def backbone_channels(backbone: nn.Module) -> int:
    """The ``out_channels`` of a backbone module, or a clear error if it has none.

    Taught in ``notebooks/03_backbone_ir50.ipynb``.
    """
    channels = getattr(backbone, "out_channels", None)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise TypeError(
            f"A backbone must have an integer attribute out_channels (the c of its [b, c, h, w] "
            f"feature map); {type(backbone).__name__} has out_channels={channels!r}."
        )
    return channels
