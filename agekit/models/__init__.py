"""Models: IR backbones, the RAPL heads and branch, RAPLNet, and (lazily) the Siamese baseline.

    from agekit.models import IR50, AgeReweighting, PositionHead, RAPLNet, SiameseNet

``SiameseNet`` and ``InceptionV3`` are imported on first use, so the RAPL side works
on its own.
"""

from __future__ import annotations

import importlib

from agekit.models.backbones import build_backbone, global_average_pool, list_backbones
from agekit.models.heads import EVRHead, GenderHead, RegressionHead
from agekit.models.ir import IR, IR50, BottleneckIR, IRSmall
from agekit.models.pretrained import LoadReport, from_rapl_authors, load_ir50_weights, load_pretrained
from agekit.config import VARIANTS
from agekit.losses import rapl_loss, siamese_loss
from agekit.models.rapl import RAPLNet, RAPLOutput
from agekit.models.reweighting import AgeReweighting, PositionHead

_LAZY = {
    "SiameseNet": "agekit.models.siamese",
    "SiameseOutput": "agekit.models.siamese",
    "InceptionV3": "agekit.models.inception",
    "load_inception_v3_weights": "agekit.models.inception",
}

__all__ = [
    "IR",
    "IR50",
    "IRSmall",
    "BottleneckIR",
    "build_backbone",
    "list_backbones",
    "global_average_pool",
    "RegressionHead",
    "EVRHead",
    "GenderHead",
    "AgeReweighting",
    "PositionHead",
    "RAPLNet",
    "RAPLOutput",
    "VARIANTS",
    "rapl_loss",
    "siamese_loss",
    "load_ir50_weights",
    "load_pretrained",
    "from_rapl_authors",
    "LoadReport",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
