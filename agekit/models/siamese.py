"""The multi-task Siamese network of Jeong et al. (Sensors 2018), Sections 2 and 2.6.

A Siamese network compares two images with two copies of one network that share
every weight. The paper keeps a single network and forms the pairs inside the
batch instead: each image is embedded once, and every unordered pair (i, j) of
the batch is compared (Section 2.2, Fig. 4). That is what this module does:

    images [b, 3, H, W] -> backbone -> feature map [b, c, h, w]
                        -> global average pool -> features [b, c]
                        -> dropout (p = 0.5)   -> dropped features [b, c]

    dropped features --age embedding FC----> [b, N_a]   (N_a = 70)
    dropped features --gender embedding FC-> [b, N_g]   (N_g = 10, multi-task only)

The two fully connected layers sit side by side on the same dropped features;
neither feeds the other.

The backbone is Inception V3 at 227 px in the paper (the ``gpu`` preset), the
IR50 of RAPL in the ``gpu_ir50`` preset (both methods on one backbone), and a
small IR on a laptop (``cpu``).
Training uses :func:`agekit.losses.siamese_loss`; ages are then read off the training set by
k-nearest neighbours in the age embedding (:mod:`agekit.knn`).

Taught in ``notebooks/07_siamese_metric_learning.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from agekit import _checks
from agekit.config import EVAL_BATCH_SIZE
from agekit.models.backbones import backbone_channels, build_backbone, global_average_pool


@dataclass
class SiameseOutput:
    """What :class:`SiameseNet` returns for a batch of b images.

    age_embedding: [b, N_a], compared between pairs for age (and used by k-NN);
    gender_embedding: [b, N_g], compared for gender, or None without the gender task;
    features: [b, c], the pooled backbone features before dropout.
    """

    age_embedding: torch.Tensor
    gender_embedding: torch.Tensor | None
    features: torch.Tensor


class SiameseNet(nn.Module):
    """One shared network embedding every image of a batch for pairwise comparison.

    Arguments:
        backbone: a name for :func:`agekit.models.backbones.build_backbone`
            ("ir_small", "ir50", "inception_v3") or a module mapping
            [b, 3, H, W] -> [b, c, h, w] with an ``out_channels`` attribute.
        age_dim: N_a, size of the age embedding (70 in the paper).
        gender_dim: N_g, size of the gender embedding (10 in the paper).
        dropout: dropout probability on the pooled features (0.5 in the paper).
        gender: False builds the age-only network (no gender embedding layer).
        **backbone_kwargs: passed to the backbone builder when ``backbone`` is a name.

    forward(images [b, 3, H, W]) -> :class:`SiameseOutput`.

    Taught in ``notebooks/07_siamese_metric_learning.ipynb``.
    """

    def __init__(self, backbone: str | nn.Module = "ir_small", age_dim: int = 70, gender_dim: int = 10,
                 dropout: float = 0.5, gender: bool = True, **backbone_kwargs):
        super().__init__()
        if isinstance(backbone, nn.Module):
            if backbone_kwargs:
                raise TypeError(f"backbone is already a module, so the keyword arguments "
                                f"{sorted(backbone_kwargs)} have nowhere to go; pass a backbone name instead.")
            self.backbone = backbone
        elif isinstance(backbone, str):
            self.backbone = build_backbone(backbone, **backbone_kwargs)
        else:
            raise TypeError(f"backbone must be a name such as 'ir_small' or an nn.Module, got {backbone!r}.")
        channels = backbone_channels(self.backbone)
        self.age_dim = _checks.positive_int("age_dim", age_dim)
        self.dropout = nn.Dropout(_checks.probability("dropout", dropout))
        self.age_embedding = nn.Linear(channels, self.age_dim)
        if gender:
            self.gender_dim = _checks.positive_int("gender_dim", gender_dim)
            self.gender_embedding = nn.Linear(channels, self.gender_dim)
        else:
            self.gender_dim = 0
            self.gender_embedding = None

    @property
    def out_channels(self) -> int:
        """c, the width of the pooled backbone features."""
        return self.age_embedding.in_features

    def forward(self, images: torch.Tensor) -> SiameseOutput:
        """images [b, 3, H, W] -> SiameseOutput(age [b, N_a], gender [b, N_g] or None, features [b, c])."""
        features = global_average_pool(self.backbone(images))
        dropped = self.dropout(features)
        gender = self.gender_embedding(dropped) if self.gender_embedding is not None else None
        return SiameseOutput(self.age_embedding(dropped), gender, features)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
        """Age embeddings [n, N_a] of many images, in eval mode and batches (for a k-NN gallery).

        The module's training/eval mode is restored afterwards.
        """
        batch_size = _checks.positive_int("batch_size", batch_size)
        was_training = self.training
        self.eval()
        try:
            parts = [self(images[start:start + batch_size]).age_embedding
                     for start in range(0, len(images), batch_size)]
        finally:
            self.train(was_training)
        if not parts:
            return torch.empty(0, self.age_dim)
        return torch.cat(parts)


def __getattr__(name: str):
    if name == "siamese_loss":  # its home is agekit.losses
        from agekit.losses import siamese_loss

        return siamese_loss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
