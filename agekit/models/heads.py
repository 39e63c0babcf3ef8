"""Output heads on the pooled features F [b, c] (RAPL Sec. III-B and III-C).

* :class:`RegressionHead`: one fully connected layer c -> 1 giving the age directly
  (the "IR50+FC" row of the paper's Table 3).
* :class:`EVRHead`: one fully connected layer c -> n over the age labels; the age is
  the softmax-weighted mean of the label values, expected value refinement (eq. 1).
* :class:`GenderHead`: one fully connected layer c -> 2 (male, female), trained with
  the cross-entropy of eq. 3.

Both age heads return ``(age [b], logits [b, n] or None)`` so a model can swap them.

Taught in ``notebooks/02_metrics_and_evr.ipynb`` (age heads) and
``notebooks/06_rapl_training.ipynb`` (gender head).
"""

from __future__ import annotations

import torch
from torch import nn

from agekit import _checks
from agekit.losses import expected_age


def _features(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.dim() != 2 or x.shape[1] != channels:
        raise ValueError(f"features must be [batch, {channels}], got shape {tuple(x.shape)}.")
    return x


class RegressionHead(nn.Module):
    """Age by regression: x [b, c] -> (age [b], None).

    ``initial_age`` sets the starting bias (the models use the mean label value), so
    the first predictions already lie inside the age range; with a zero bias and
    the paper's learning rate of 1e-5, the L1 loss would need many thousands of
    steps just to move the output from 0 to a typical age.
    Taught in ``notebooks/02_metrics_and_evr.ipynb``.
    """

    def __init__(self, in_channels: int, initial_age: float = 0.0):
        super().__init__()
        self.in_channels = _checks.positive_int("in_channels", in_channels)
        self.fc = nn.Linear(self.in_channels, 1)
        with torch.no_grad():
            self.fc.bias.fill_(float(initial_age))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.fc(_features(x, self.in_channels)).squeeze(1), None


class EVRHead(nn.Module):
    """Expected value refinement: x [b, c] -> (age [b], logits [b, n]).

    eq. 1: age = sum_i l_i * softmax(logits)_i over the n label values l (buffer
    ``age_values``, float [n]; it travels with the module and its checkpoints).
    Taught in ``notebooks/02_metrics_and_evr.ipynb``.
    """

    def __init__(self, in_channels: int, age_values):
        super().__init__()
        self.in_channels = _checks.positive_int("in_channels", in_channels)
        values = _checks.vector("age_values", age_values).to(torch.float32)
        self.register_buffer("age_values", values.clone())
        self.fc = nn.Linear(self.in_channels, values.numel())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.fc(_features(x, self.in_channels))
        return expected_age(logits, self.age_values), logits  # eq. 1


class GenderHead(nn.Module):
    """Gender logits: x [b, c] -> [b, 2], column 0 male, column 1 female (eq. 3's classes).

    Taught in ``notebooks/06_rapl_training.ipynb``.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.in_channels = _checks.positive_int("in_channels", in_channels)
        self.fc = nn.Linear(self.in_channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(_features(x, self.in_channels))
