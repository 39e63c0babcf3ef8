"""IR backbones: the improved residual network of face recognition (IR-50 and a CPU-sized IR).

RAPL (Amirullaeva & Han, 2024, Sec. III-A) extracts face features with IR-50, the
residual network used by ArcFace-style face recognisers (the InsightFace and
face.evoLVe code bases), with its last stage removed as in POSTER++ (Mao et al.,
2023). What stays is an input layer and three stages of ``bottleneck_IR`` units:

    input_layer: conv 3x3 (3 -> 64), BatchNorm, PReLU              112 x 112
    stage 1:   3 units,  64 channels, first unit stride 2          ->  56 x 56
    stage 2:   4 units, 128 channels, first unit stride 2          ->  28 x 28
    stage 3:  14 units, 256 channels, first unit stride 2          ->  14 x 14

so ``[b, 3, 112, 112] -> [b, 256, 14, 14]`` with 17,611,968 parameters
(face.evoLVe's full IR-50 adds a fourth stage of three 512-channel units and an
output layer). Average pooling over the 14 x 14 map then gives the features
``F: [b, 256]`` of the paper; that pooling is done by the model that uses the
backbone (:func:`agekit.models.backbones.global_average_pool`), so a backbone
always returns a feature map.

The module names (``input_layer.0/1/2``, ``body.N.shortcut_layer.0/1``,
``body.N.res_layer.0..4``) are face.evoLVe's, so its pretrained weights load
without renaming (:mod:`agekit.models.pretrained`).

:class:`IR` builds any member of the family from units per stage and widths; the
CPU preset :class:`IRSmall` (widths 16, 32, 64; units 1, 1, 2) has the same
structure with 151,472 parameters, for 32-64 px images on a laptop.

Weights start at PyTorch's default initialisation; the paper fine-tunes from
face-recognition weights instead (``load_ir50_weights``). The input size is not
forced to 112 px (POSTER++ resizes inside the model; here the data pipeline
decides), so any side divisible by 2**stages works.

Taught in ``notebooks/03_backbone_ir50.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from agekit import _checks


class BottleneckIR(nn.Module):
    """One ``bottleneck_IR`` unit: ``res_layer(x) + shortcut_layer(x)``.

    res_layer:      BatchNorm -> conv 3x3 -> PReLU -> conv 3x3 (stride) -> BatchNorm
    shortcut_layer: MaxPool2d(1, stride) when the width stays the same (a strided
                    identity), else conv 1x1 (stride) -> BatchNorm.

    x: [b, in_channels, h, w] -> [b, depth, ceil(h / stride), ceil(w / stride)].
    Taught in ``notebooks/03_backbone_ir50.ipynb``.
    """

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, (1, 1), stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IR(nn.Module):
    """An IR backbone with ``units[s]`` bottleneck units of ``widths[s]`` channels in stage s.

    The first unit of every stage halves the resolution, so an input of side H
    gives a map of side H / 2**len(units). ``stem_width`` (default ``widths[0]``)
    is the width of the input convolution.

    images: [b, in_channels, H, W] -> feature map [b, widths[-1], H / 2**S, W / 2**S].
    ``.out_channels`` is ``widths[-1]``; ``.units`` and ``.widths`` record the shape.
    Taught in ``notebooks/03_backbone_ir50.ipynb``.
    """

    def __init__(
        self,
        units: Sequence[int] = (1, 1, 2),
        widths: Sequence[int] = (16, 32, 64),
        stem_width: int | None = None,
        in_channels: int = 3,
    ):
        super().__init__()
        units = tuple(_checks.positive_int(f"units[{i}]", u) for i, u in enumerate(units))
        widths = tuple(_checks.positive_int(f"widths[{i}]", w) for i, w in enumerate(widths))
        if not units or len(units) != len(widths):
            raise ValueError(
                f"units and widths need one entry per stage and the same length, got "
                f"units={units} and widths={widths}."
            )
        stem_width = widths[0] if stem_width is None else _checks.positive_int("stem_width", stem_width)
        in_channels = _checks.positive_int("in_channels", in_channels)
        self.units, self.widths = units, widths
        self.out_channels = widths[-1]
        self.input_layer = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, (3, 3), 1, 1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.PReLU(stem_width),
        )
        blocks, previous = [], stem_width
        for count, width in zip(units, widths):
            for index in range(count):
                blocks.append(BottleneckIR(previous, width, stride=2 if index == 0 else 1))
                previous = width
        # One flat Sequential, as in face.evoLVe: unit N of the whole body is body.N.
        self.body = nn.Sequential(*blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"images must be [batch, channels, height, width], got shape {tuple(images.shape)}.")
        return self.body(self.input_layer(images))

    def extra_repr(self) -> str:
        return f"units={self.units}, widths={self.widths}"


class IR50(IR):
    """IR-50 without its fourth stage (RAPL Sec. III-A, as in POSTER++).

    images: [b, 3, 112, 112] -> [b, 256, 14, 14]; 17,611,968 parameters.
    Load face-recognition weights with :func:`agekit.models.pretrained.load_ir50_weights`.
    Taught in ``notebooks/03_backbone_ir50.ipynb``.
    """

    def __init__(self, in_channels: int = 3):
        super().__init__(units=(3, 4, 14), widths=(64, 128, 256), in_channels=in_channels)


class IRSmall(IR):
    """The CPU preset: the IR design at widths (16, 32, 64) with (1, 1, 2) units.

    images: [b, 3, 32, 32] -> [b, 64, 4, 4]; [b, 3, 64, 64] -> [b, 64, 8, 8].
    Pass ``units`` / ``widths`` to make it deeper or wider.
    Taught in ``notebooks/03_backbone_ir50.ipynb``.
    """

    def __init__(self, units: Sequence[int] = (1, 1, 2), widths: Sequence[int] = (16, 32, 64), in_channels: int = 3):
        super().__init__(units=units, widths=widths, in_channels=in_channels)
