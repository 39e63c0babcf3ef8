"""The age-based reweighting module and the position head (RAPL Sec. III-D, eqs. 4-7).

The reference features R [n, c] hold one representative training face per age
label (Algorithm 1, :mod:`agekit.references`). The module turns them into age
weights and uses them to reweight the features of every input:

    eq. 4   Z = R^T * p           R^T: [c, n], p: [n] learnable, one scale per age
    eq. 5   W = sigmoid(Z)        W: [c, n], a gate in (0, 1) per channel and age
    eq. 6   x_hat[i, j, k] = x[i, j] * W[j, k]      x: [b, c] -> x_hat: [b, c, n]

The position head then summarises each channel over the n ages with a Linear(n, 1),
flattens to [b, c] and predicts the age position with a Linear(c, n); its logits
go into the cross-entropy of eq. 7.

Taught in ``notebooks/05_age_reweighting.ipynb``.
"""

from __future__ import annotations

import torch
from torch import nn

from agekit import _checks


class AgeReweighting(nn.Module):
    """Eqs. 4-6: x [b, c], references [n, c] -> x_hat [b, c, n]. Parameter ``p``: [n].

    Initialising p. The authors' code creates p with ``torch.empty``, i.e. with
    whatever values happen to be in memory: not reproducible, and possibly huge or
    NaN. Here p starts at ``init`` (default 1.0) for every age, so at the start
    W = sigmoid(R^T): each age's gate is its reference's own features squashed
    into (0, 1), and the branch carries reference information from its first
    step. The other natural choice, p = 0, gives W = 0.5 everywhere: the gate is
    the same for every age, so the references would have no effect until p moved
    away from zero. Both are deterministic; pass ``init=0.0`` to try the second.
    Taught in ``notebooks/05_age_reweighting.ipynb``.
    """

    def __init__(self, num_ages: int, init: float = 1.0):
        super().__init__()
        self.num_ages = _checks.positive_int("num_ages", num_ages)
        if isinstance(init, bool) or not isinstance(init, (int, float)) or init != init:
            raise TypeError(f"init must be a number (the starting value of p), got {init!r}.")
        self.p = nn.Parameter(torch.full((self.num_ages,), float(init)))

    def age_weights(self, references: torch.Tensor) -> torch.Tensor:
        """The age weights W: references [n, c] -> [c, n] (eqs. 4-5), e.g. to plot as a heat map."""
        references = _checks.matrix("references", references)
        if references.shape[0] != self.num_ages:
            raise ValueError(
                f"references must have one row per age label ({self.num_ages}), got shape "
                f"{tuple(references.shape)}. Build them with agekit.references.select_references."
            )
        z = references.t() * self.p  # eq. 4: z[j, k] = r[j, k] * p[k], with R permuted to [c, n]
        return torch.sigmoid(z)  # eq. 5: W = sigmoid(Z)

    def forward(self, x: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        weights = self.age_weights(references.to(x.device))
        if x.dim() != 2 or x.shape[1] != weights.shape[0]:
            raise ValueError(
                f"x must be [batch, {weights.shape[0]}] (the references' channels), got shape {tuple(x.shape)}."
            )
        return x.unsqueeze(2) * weights  # eq. 6: x_hat[i, j, k] = x[i, j] * W[j, k]

    def extra_repr(self) -> str:
        return f"num_ages={self.num_ages}"


class PositionHead(nn.Module):
    """Relative age position logits: x_hat [b, c, n] -> [b, n] (the input of eq. 7).

    ``age_fc`` = Linear(n, 1) over the last dimension gives [b, c, 1]; flattened to
    [b, c], ``position_fc`` = Linear(c, n) gives one logit per age position.
    Taught in ``notebooks/05_age_reweighting.ipynb``.
    """

    def __init__(self, num_channels: int, num_ages: int):
        super().__init__()
        self.num_channels = _checks.positive_int("num_channels", num_channels)
        self.num_ages = _checks.positive_int("num_ages", num_ages)
        self.age_fc = nn.Linear(self.num_ages, 1)
        self.position_fc = nn.Linear(self.num_channels, self.num_ages)

    def forward(self, x_hat: torch.Tensor) -> torch.Tensor:
        expected = (self.num_channels, self.num_ages)
        if x_hat.dim() != 3 or tuple(x_hat.shape[1:]) != expected:
            raise ValueError(f"x_hat must be [batch, {expected[0]}, {expected[1]}], got shape {tuple(x_hat.shape)}.")
        per_channel = self.age_fc(x_hat).flatten(1)  # [b, c, n] -> [b, c, 1] -> [b, c]
        return self.position_fc(per_channel)  # [b, c] -> [b, n]
