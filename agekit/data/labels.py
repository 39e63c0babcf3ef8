"""Age labels and relative age positions (RAPL, Fig. 2).

A data set's *age labels* are the sorted distinct ages of its training split.
The *position* of an age is its index in that list. AgeDB has no three-year-old,
so its labels start 1, 2, 4, ... and age 4 sits at position 2. Expected value
refinement (eq. 1) takes its expectation over these same label values, and the
position head (eq. 7) predicts positions.

Taught in ``notebooks/01_synthetic_faces.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agekit import _checks


@dataclass(frozen=True)
class AgeLabels:
    """Sorted distinct ages ``values`` (int64 [n]) and the age <-> position maps."""

    values: torch.Tensor

    def __post_init__(self):
        values = _checks.vector("values", self.values)
        if values.is_floating_point():
            if not torch.equal(values, values.round()):
                raise ValueError(f"Age labels must be whole years, got {values[values != values.round()][:3].tolist()}.")
        values = values.to(torch.int64)
        if values.numel() > 1 and not bool((values[1:] > values[:-1]).all()):
            raise ValueError("Age label values must be strictly increasing; build them with AgeLabels.from_ages(ages).")
        object.__setattr__(self, "values", values.cpu())

    @classmethod
    def from_ages(cls, ages) -> "AgeLabels":
        """The sorted distinct whole ages in ``ages`` (usually the training split's)."""
        ages = _checks.vector("ages", ages)
        if ages.is_floating_point() and not torch.equal(ages, ages.round()):
            raise ValueError("ages must be whole years to define labels; round them first.")
        return cls(torch.unique(ages.to(torch.int64)))

    def __len__(self) -> int:
        return int(self.values.numel())

    @property
    def num_ages(self) -> int:
        """n, the number of labels (the width of EVR and the position head)."""
        return len(self)

    def to_positions(self, ages) -> torch.Tensor:
        """Map whole ages to their positions (int64, same shape, same device as ``ages``).

        An age that is not a label raises, naming it: positions only exist for
        ages seen in training.
        """
        ages = _checks.as_tensor("ages", ages)
        if ages.is_floating_point():
            if not torch.isfinite(ages).all():
                raise ValueError("ages contains NaN or infinite values.")
            if not torch.equal(ages, ages.round()):
                raise ValueError("ages must be whole years to map to positions; round them first.")
        values = self.values.to(ages.device)
        flat = ages.reshape(-1).to(torch.int64)
        positions = torch.searchsorted(values, flat).clamp_max(len(values) - 1)
        unknown = values[positions] != flat
        if bool(unknown.any()):
            missing = sorted(set(flat[unknown].tolist()))
            raise ValueError(
                f"Ages {missing[:10]} are not among the {len(values)} age labels "
                f"({int(values[0])}..{int(values[-1])}); labels come from the training ages."
            )
        return positions.reshape(ages.shape)

    def to_ages(self, positions) -> torch.Tensor:
        """Map positions back to ages (int64, same shape and device as ``positions``)."""
        positions = _checks.as_tensor("positions", positions)
        if positions.is_floating_point():
            raise TypeError("positions must be integers (indices into the labels).")
        if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= len(self)):
            raise ValueError(
                f"positions must lie in 0..{len(self) - 1}, got values from "
                f"{int(positions.min())} to {int(positions.max())}."
            )
        return self.values.to(positions.device)[positions.to(torch.int64)]

    def as_float(self, device=None) -> torch.Tensor:
        """Label values as float32 (for EVR's expectation, eq. 1)."""
        return self.values.to(device=device, dtype=torch.float32)

    def to_list(self) -> list[int]:
        return [int(v) for v in self.values]


def label_values(age_labels) -> torch.Tensor:
    """The label values (int64 [n], CPU) of an AgeLabels, or of a 1-D tensor or list of increasing whole ages.

    Taught in ``notebooks/04_reference_selection.ipynb``.
    """
    if isinstance(age_labels, AgeLabels):
        return age_labels.values
    if isinstance(age_labels, (torch.Tensor, list, tuple)) or hasattr(age_labels, "__array__"):
        values = torch.as_tensor(age_labels).detach().cpu()
        try:
            return AgeLabels(values).values
        except (TypeError, ValueError) as error:
            raise ValueError(f"age_labels: {error}") from None
    raise TypeError(
        f"age_labels must be an AgeLabels or a 1-D tensor of label values, got {type(age_labels).__name__}; "
        "build one with AgeLabels.from_ages(train_ages)."
    )
