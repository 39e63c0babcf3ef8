"""RAPLNet: the whole RAPL model (Amirullaeva & Han, 2024, Fig. 1); its joint loss is :func:`agekit.losses.rapl_loss`.

    images --backbone--> feature map --average pool--> F [b, c]
    F --age head------------------------------> age [b]       (FC, or EVR eq. 1)
    F --gender head---------------------------> gender logits [b, 2]       (GP, eq. 3)
    F, references R [n, c] --reweighting------> x_hat [b, c, n]           (eqs. 4-6)
    x_hat --position head---------------------> position logits [b, n]     (eq. 7)

The position branch runs only when the model has it (``rapl=True``) and the
caller passes references; in the first epoch there are none yet
(:class:`agekit.references.ReferenceBank`), so the model trains without it.
At inference the age is the age head's (EVR) estimate; the position head gives a
second estimate (:meth:`RAPLNet.position_age`) for the confidence score (eq. 12).

The five rows of the paper's ablation (Table 3) are presets:

    RAPLNet.from_variant("EVR+RAPL+GP", labels, backbone="ir_small")

Taught in ``notebooks/06_rapl_training.ipynb`` and ``notebooks/09_ablations.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from agekit import _checks
from agekit.config import VARIANTS
from agekit.data.labels import label_values
from agekit.models.backbones import backbone_channels, build_backbone, global_average_pool
from agekit.models.heads import EVRHead, GenderHead, RegressionHead
from agekit.models.reweighting import AgeReweighting, PositionHead

@dataclass
class RAPLOutput:
    """Everything one forward pass gives; parts a model does not have are None.

    age: [b] estimated ages (EVR expectation, or the FC regression);
    age_logits: [b, n] EVR logits over the age labels (None for FC);
    gender_logits: [b, 2] (None without GP);
    position_logits: [b, n] (None without RAPL or without references);
    features: [b, c] the pooled backbone features F, e.g. for the reference bank.
    """

    age: torch.Tensor
    age_logits: torch.Tensor | None
    gender_logits: torch.Tensor | None
    position_logits: torch.Tensor | None
    features: torch.Tensor


class RAPLNet(nn.Module):
    """Backbone + age head (``"evr"`` or ``"fc"``) + optional gender head + optional RAPL branch.

    age_labels: AgeLabels or 1-D increasing whole ages (n labels), kept as the
    buffer ``age_values`` (int64 [n]) so a checkpoint carries them.
    backbone: a name for :func:`~agekit.models.backbones.build_backbone` (its
    keyword arguments follow as ``**backbone_kwargs``) or a module with
    ``out_channels``. ``reweighting_init``: starting value of p (eq. 4).

    forward(images [b, 3, H, W], references [n, c] or None) -> :class:`RAPLOutput`;
    a model without the RAPL branch ignores ``references``, so a training loop can
    always pass ``bank.references``.
    Taught in ``notebooks/06_rapl_training.ipynb``.
    """

    def __init__(
        self,
        age_labels,
        backbone: str | nn.Module = "ir50",
        head: str = "evr",
        gender: bool = True,
        rapl: bool = True,
        reweighting_init: float = 1.0,
        **backbone_kwargs,
    ):
        super().__init__()
        values = label_values(age_labels)
        self.register_buffer("age_values", values.clone())
        head = _checks.choice("head", head, ("evr", "fc"))
        if isinstance(backbone, str):
            backbone = build_backbone(backbone, **backbone_kwargs)
        elif not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be a name or an nn.Module, got {type(backbone).__name__}.")
        elif backbone_kwargs:
            raise TypeError(f"Backbone options {sorted(backbone_kwargs)} only apply when backbone is given by name.")
        self.backbone = backbone
        channels, n = backbone_channels(backbone), values.numel()
        self.num_channels, self.num_ages = channels, n
        if head == "evr":
            self.age_head = EVRHead(channels, values)
        else:
            self.age_head = RegressionHead(channels, initial_age=float(values.float().mean()))
        self.gender_head = GenderHead(channels) if gender else None
        self.reweighting = AgeReweighting(n, init=reweighting_init) if rapl else None
        self.position_head = PositionHead(channels, n) if rapl else None

    @classmethod
    def from_variant(cls, variant: str, age_labels, backbone: str | nn.Module = "ir50", **kwargs) -> "RAPLNet":
        """A row of the paper's Table 3: "FC", "EVR", "EVR+GP", "EVR+RAPL" or "EVR+RAPL+GP".

        A leading "IR50+" (as the paper writes the rows) is accepted and ignored;
        the backbone is chosen by ``backbone``. Taught in ``notebooks/09_ablations.ipynb``.
        """
        name = variant.upper().removeprefix("IR50+") if isinstance(variant, str) else variant
        _checks.choice("variant", name, list(VARIANTS))
        return cls(age_labels, backbone=backbone, **VARIANTS[name], **kwargs)

    @property
    def variant(self) -> str | None:
        """The Table 3 name of this configuration (None if it is none of the five)."""
        parts = {
            "head": "evr" if isinstance(self.age_head, EVRHead) else "fc",
            "gender": self.gender_head is not None,
            "rapl": self.reweighting is not None,
        }
        return next((name for name, preset in VARIANTS.items() if preset == parts), None)

    def forward(self, images: torch.Tensor, references: torch.Tensor | None = None) -> RAPLOutput:
        features = global_average_pool(self.backbone(images))  # F: [b, c] (Sec. III-A)
        age, age_logits = self.age_head(features)
        gender_logits = self.gender_head(features) if self.gender_head is not None else None
        position_logits = None
        if self.reweighting is not None and references is not None:
            if tuple(references.shape) != (self.num_ages, self.num_channels):
                raise ValueError(
                    f"references must be [{self.num_ages}, {self.num_channels}] (one row per age label, "
                    f"backbone channels), got shape {tuple(references.shape)}."
                )
            x_hat = self.reweighting(features, references)  # eqs. 4-6: [b, c, n]
            position_logits = self.position_head(x_hat)  # [b, n], the input of eq. 7
        return RAPLOutput(age, age_logits, gender_logits, position_logits, features)

    def position_age(self, output: RAPLOutput) -> torch.Tensor:
        """The age label at the most likely position, int64 [b]: the second estimate of eq. 12.

        Taught in ``notebooks/06_rapl_training.ipynb``.
        """
        if output.position_logits is None:
            raise ValueError(
                "This output has no position logits: the model needs rapl=True and the forward pass "
                "needs references (e.g. model(images, references=bank.references))."
            )
        return self.age_values[output.position_logits.argmax(dim=1)]


def __getattr__(name: str):
    if name == "rapl_loss":  # its home is agekit.losses
        from agekit.losses import rapl_loss

        return rapl_loss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
