"""Inception V3 (Szegedy et al., "Rethinking the Inception Architecture for
Computer Vision", CVPR 2016), the backbone of the Siamese baseline (Jeong et al.,
2018, Section 2.1), written in plain torch.

The network is a stem of ordinary convolutions followed by three families of
Inception blocks, one per grid size, with two grid-reduction blocks between them:

    stem         [b, 3, 299, 299] -> [b, 192, 35, 35]   five conv+BN+ReLU, two max-pools
    Mixed_5b..5d 35 x 35 blocks   (paper Fig. 5: a 5x5 filter becomes two 3x3 ones)
    Mixed_6a     reduction 35 -> 17 (Fig. 10: strided convs next to a strided pool)
    Mixed_6b..6e 17 x 17 blocks   (Fig. 6: a 7x7 filter becomes 1x7 then 7x1)
    Mixed_7a     reduction 17 -> 8
    Mixed_7b..7c 8 x 8 blocks     (Fig. 7: 1x3 and 3x1 side by side, a wider output)
    -> [b, 2048, 8, 8]

Module and parameter names follow torchvision's ``Inception3`` exactly
(``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch5x5_2.bn.running_var``, ...), and
so does the order in which each block concatenates its branches, so an ImageNet
state dict saved from torchvision loads with :func:`load_inception_v3_weights`.
The classifier (``fc``) and the auxiliary classifier (``AuxLogits``, Section 4 of
the paper) are optional: the Siamese network uses the feature maps only.

Smallest input: 75 x 75 pixels (a smaller image shrinks to nothing before Mixed_7a).

Taught in ``notebooks/07_siamese_metric_learning.ipynb``.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from agekit import _checks
from agekit.models.pretrained import read_state_dict

MIN_INPUT_SIZE = 75
"""Smallest height and width (pixels) that survive the stem and both reductions."""


class ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 0.001, as in the TensorFlow original), ReLU.

    Keys: ``conv.weight``, ``bn.weight``, ``bn.bias``, ``bn.running_mean``,
    ``bn.running_var``, ``bn.num_batches_tracked``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Block35(nn.Module):
    """35 x 35 block (torchvision's ``InceptionA``): [b, c_in, h, w] -> [b, 224 + pool_features, h, w].

    Four branches side by side: 1x1 (64); 1x1 then 5x5 (64); 1x1 then two 3x3 (96);
    3x3 average pool then 1x1 (``pool_features``).
    """

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        one = self.branch1x1(x)
        five = self.branch5x5_2(self.branch5x5_1(x))
        three = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([one, five, three, pool], dim=1)


class Reduction35to17(nn.Module):
    """Grid reduction (torchvision's ``InceptionB``): [b, c, h, w] -> [b, 480 + c, (h-3)//2+1, ...].

    A strided 3x3 (384), a 1x1 -> 3x3 -> strided 3x3 stack (96) and a strided
    max-pool run in parallel, so the grid halves while the channels grow.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        three = self.branch3x3(x)
        stack = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([three, stack, pool], dim=1)


class Block17(nn.Module):
    """17 x 17 block (torchvision's ``InceptionC``): [b, 768, h, w] -> [b, 768, h, w].

    Each 7x7 receptive field is built from a 1x7 and a 7x1 convolution (cheaper
    than one 7x7). Branches: 1x1 (192); 1x1 -> 1x7 -> 7x1 (192); 1x1 -> 7x1 -> 1x7
    -> 7x1 -> 1x7 (192); average pool -> 1x1 (192). ``c7`` is the inner width.
    """

    def __init__(self, in_channels: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = ConvBN(in_channels, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(in_channels, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        one = self.branch1x1(x)
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([one, seven, double, pool], dim=1)


class Reduction17to8(nn.Module):
    """Grid reduction (torchvision's ``InceptionD``): [b, 768, h, w] -> [b, 1280, (h-3)//2+1, ...].

    Branches: 1x1 -> strided 3x3 (320); 1x1 -> 1x7 -> 7x1 -> strided 3x3 (192);
    strided max-pool (768).
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        three = self.branch3x3_2(self.branch3x3_1(x))
        seven = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            seven = layer(seven)
        pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([three, seven, pool], dim=1)


class Block8(nn.Module):
    """8 x 8 block (torchvision's ``InceptionE``): [b, c_in, h, w] -> [b, 2048, h, w].

    The widest block: after a shared 1x1 (or 1x1 -> 3x3) stem, a 1x3 and a 3x1
    convolution run *side by side* and are concatenated, widening the output.
    Branches: 1x1 (320); 1x1 -> [1x3 | 3x1] (768); 1x1 -> 3x3 -> [1x3 | 3x1] (768);
    average pool -> 1x1 (192).
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        one = self.branch1x1(x)
        stem = self.branch3x3_1(x)
        three = torch.cat([self.branch3x3_2a(stem), self.branch3x3_2b(stem)], dim=1)
        stem = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        double = torch.cat([self.branch3x3dbl_3a(stem), self.branch3x3dbl_3b(stem)], dim=1)
        pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([one, three, double, pool], dim=1)


class AuxClassifier(nn.Module):
    """Auxiliary classifier on the 17 x 17 grid (torchvision's ``InceptionAux``).

    [b, 768, 17, 17] -> logits [b, num_classes]: 5x5/3 average pool, 1x1 (128),
    5x5 (768), global average pool, linear. Needs a grid of at least 17 x 17
    (inputs of about 299 px); it exists here so that torchvision state dicts keep
    their ``AuxLogits.*`` keys when a full classifier is wanted.
    """

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv0 = ConvBN(in_channels, 128, 1)
        self.conv1 = ConvBN(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(F.avg_pool2d(x, kernel_size=5, stride=3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InceptionV3(nn.Module):
    """Inception V3 feature extractor: images [b, 3, H, W] (H, W >= 75) -> [b, 2048, h, w].

    At 299 px the output grid is 8 x 8, at 227 px (the Siamese paper's size) 5 x 5,
    at 75 px 1 x 1. ``out_channels`` is 2048.

    Arguments:
        num_classes: None (default) for a pure feature extractor; an int adds the
            ImageNet-style classifier ``fc`` (2048 -> num_classes) used by :meth:`classify`.
        aux_logits: add the auxiliary classifier ``AuxLogits`` (needs ``num_classes``).
        transform_input: torchvision's ImageNet weights were ported from TensorFlow
            and expect pixels scaled to [-1, 1]. With ``True`` the network takes
            images normalised with the usual ImageNet mean/std and converts them
            itself (torchvision switches this on when it loads those weights).
        dropout: dropout before ``fc`` in :meth:`classify`.

    Fresh weights: He-normal convolutions (fan-out), unit BN scale, zero BN shift,
    N(0, 0.01) linear weights. (torchvision draws truncated normals with std 0.1,
    which only matters when training from scratch.)

    Taught in ``notebooks/07_siamese_metric_learning.ipynb``.
    """

    out_channels = 2048

    def __init__(self, num_classes: int | None = None, aux_logits: bool = False,
                 transform_input: bool = False, dropout: float = 0.5):
        super().__init__()
        if num_classes is not None:
            num_classes = _checks.positive_int("num_classes", num_classes)
        if aux_logits and num_classes is None:
            raise ValueError("aux_logits=True needs num_classes (the auxiliary head is a classifier); "
                             "leave aux_logits=False for a feature extractor.")
        self.transform_input = bool(transform_input)
        # stem: [b, 3, 299, 299] -> [b, 192, 35, 35]
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        # 35 x 35: 192 -> 256 -> 288 -> 288 channels
        self.Mixed_5b = Block35(192, pool_features=32)
        self.Mixed_5c = Block35(256, pool_features=64)
        self.Mixed_5d = Block35(288, pool_features=64)
        self.Mixed_6a = Reduction35to17(288)
        # 17 x 17: 768 channels throughout, inner width 128 -> 160 -> 160 -> 192
        self.Mixed_6b = Block17(768, c7=128)
        self.Mixed_6c = Block17(768, c7=160)
        self.Mixed_6d = Block17(768, c7=160)
        self.Mixed_6e = Block17(768, c7=192)
        self.AuxLogits = AuxClassifier(768, num_classes) if aux_logits else None
        self.Mixed_7a = Reduction17to8(768)
        # 8 x 8: 1280 -> 2048 -> 2048 channels
        self.Mixed_7b = Block8(1280)
        self.Mixed_7c = Block8(2048)
        self.dropout = nn.Dropout(_checks.probability("dropout", dropout))
        self.fc = nn.Linear(2048, num_classes) if num_classes is not None else None
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)

    def _check_input(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"InceptionV3 expects images [batch, 3, height, width], got {shape}.")
        height, width = images.shape[-2:]
        if height < MIN_INPUT_SIZE or width < MIN_INPUT_SIZE:
            raise ValueError(
                f"InceptionV3 needs images of at least {MIN_INPUT_SIZE} x {MIN_INPUT_SIZE} pixels, "
                f"got {height} x {width}. Resize the images (the paper uses 227 px, ImageNet 299 px) "
                f"or use the small IR backbone ('ir_small') for tiny images."
            )

    def _scale_input(self, images: torch.Tensor) -> torch.Tensor:
        # ImageNet mean/std normalisation -> the [-1, 1] scaling the ported weights expect
        if not self.transform_input:
            return images
        mean = images.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = images.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return (images * std + mean - 0.5) / 0.5

    def _trunk(self, images: torch.Tensor, stop_at_17: bool = False):
        self._check_input(images)
        x = self._scale_input(images)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6a(x)
        grid17 = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(grid17)))
        return x, grid17

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [b, 3, H, W] -> feature maps [b, 2048, h, w]."""
        return self._trunk(images)[0]

    def classify(self, images: torch.Tensor):
        """ImageNet-style logits [b, num_classes]; in training mode with ``AuxLogits``,
        the pair (logits, aux_logits). Needs ``num_classes``."""
        if self.fc is None:
            raise RuntimeError("This InceptionV3 has no classifier; build it with num_classes=... to classify.")
        features, grid17 = self._trunk(images)
        logits = self.fc(self.dropout(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1)))
        if self.AuxLogits is not None and self.training:
            return logits, self.AuxLogits(grid17)
        return logits


def _list(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_inception_v3_weights(model: nn.Module, path) -> list[str]:
    """Load an Inception V3 state dict in torchvision's layout into ``model``.

    ``model`` is an :class:`InceptionV3` (or a network whose ``.backbone`` is one,
    such as a SiameseNet). The file is read by
    :func:`agekit.models.pretrained.read_state_dict` (``torch.load(weights_only=True)``,
    or safetensors): files carrying pickled code are refused, a ``"state_dict"``
    wrapper and a ``module.`` prefix are removed. Keys under ``fc.`` and ``AuxLogits.``
    are dropped when ``model`` has no classifier / auxiliary head; every other
    missing or unexpected key or shape mismatch raises, listing them. BN counters
    (``num_batches_tracked``) may be absent, as in the original ported weights.

    Returns the list of dropped keys.

    Taught in ``notebooks/07_siamese_metric_learning.ipynb``.
    """
    target = model
    if not isinstance(target, InceptionV3) and isinstance(getattr(model, "backbone", None), InceptionV3):
        target = model.backbone
    if not isinstance(target, InceptionV3):
        raise TypeError(f"model must be an InceptionV3 (or have one as .backbone), got {type(model).__name__}.")
    incoming, _ = read_state_dict(path)  # weights_only=True; refuses pickled code
    # checkpoints saved from nn.DataParallel / DistributedDataParallel prefix every key
    if incoming and all(key.startswith("module.") for key in incoming):
        incoming = {key[len("module."):]: value for key, value in incoming.items()}
    dropped = []
    for head in ("fc", "AuxLogits"):
        if getattr(target, head) is None:
            dropped += [key for key in incoming if key.startswith(head + ".")]
    skipped = set(dropped)
    incoming = {key: value for key, value in incoming.items() if key not in skipped}

    expected = target.state_dict()
    optional = {key for key in expected if key.endswith("num_batches_tracked")}
    missing = set(expected) - set(incoming) - optional
    unexpected = set(incoming) - set(expected)
    mismatched = [
        f"{key} {tuple(incoming[key].shape)} vs {tuple(expected[key].shape)} expected"
        for key in set(incoming) & set(expected)
        if incoming[key].shape != expected[key].shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing keys: {_list(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_list(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches: {_list(mismatched)}")
        raise ValueError(
            f"{os.fspath(path)!r} does not fit torchvision's Inception V3 layout; "
            + "; ".join(problems) + ". Is it an Inception V3 state dict saved from torchvision?"
        )
    for key in optional - set(incoming):
        incoming[key] = expected[key]
    target.load_state_dict(incoming, strict=True)
    return sorted(dropped)
