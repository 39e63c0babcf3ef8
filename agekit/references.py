"""Reference selection (RAPL Algorithm 1) and the per-epoch reference bank.

For every age label, RAPL picks one training face to stand for that age: among
the training samples whose true age equals the label, the one the model got most
nearly right (smallest |true - predicted| age). Its pooled features become that
label's row of the reference map R [n, c], which the reweighting module (eqs. 4-6)
turns into age weights.

Open points of the paper decided here (see DESIGN.md, "Reference selection"):

* ties: the smallest error wins, then the smallest sample index;
* a label without any training sample copies the reference of the nearest
  present age (the younger one on equal distance), with a warning;
* samples whose true age is not a label are ignored;
* features and predictions come from the training pass of the epoch just
  finished (:class:`ReferenceBank`, ``mode="latest"``), or from the epoch with
  the best validation MAE so far (``mode="best_val"``, the authors' code).

Taught in ``notebooks/04_reference_selection.ipynb``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from agekit import _checks
from agekit.data.labels import AgeLabels, label_values  # label_values: importable here as before


@dataclass(frozen=True)
class ReferenceInfo:
    """What :func:`select_references` chose.

    source_index: int64 [n], the sample index whose features became each label's row;
    reference_errors: float32 [n], that sample's |true - predicted| age;
    missing_ages: labels that had no training sample, in increasing order;
    filled_from: {missing label: the present label whose reference it copied}.
    """

    source_index: torch.Tensor
    reference_errors: torch.Tensor
    missing_ages: list[int] = field(default_factory=list)
    filled_from: dict[int, int] = field(default_factory=dict)


LOOKUP_SPAN = 1 << 20
"""Label ranges up to this many whole years are looked up in a table; wider ones are searched."""


def _label_slots(true_ages: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Position of each true age among the n sorted label ``values``, or n where it is no label.

    true_ages: [K] (any real dtype), values: int64 [n] increasing -> int64 [K].
    Ages are whole years in a short range, so a table over that range (n where an
    age is no label) answers with one gather instead of a binary search per sample;
    a fractional age gets n. Ranges wider than ``LOOKUP_SPAN`` are searched instead.
    """
    n = values.numel()
    whole, fractional = true_ages, None
    if true_ages.is_floating_point():
        whole = true_ages.to(torch.int64)  # truncates; a fractional age is caught below
        fractional = whole != true_ages
    elif true_ages.dtype not in (torch.int32, torch.int64):
        whole = true_ages.to(torch.int64)
    low, high = (int(bound) for bound in torch.aminmax(whole))
    base, top = min(0, low, int(values[0])), max(high, int(values[-1]))  # base 0 for ages >= 0: no shift
    if top - base >= LOOKUP_SPAN:
        true64, labels64 = true_ages.to(torch.float64), values.to(torch.float64)
        slot = torch.searchsorted(labels64, true64).clamp_max(n - 1)
        return torch.where(labels64[slot] == true64, slot, n)
    table = torch.full((top - base + 1,), n, dtype=torch.int64, device=values.device)
    table[values - base] = torch.arange(n, device=values.device)
    slot = table.index_select(0, whole - base if base else whole)  # index_select: the fastest gather on CPU
    return slot if fractional is None else slot.masked_fill_(fractional, n)


def select_references(features, pred_ages, true_ages, age_labels, return_info: bool = False):
    """Algorithm 1: one reference feature vector per age label.

    features: [K, c]; pred_ages, true_ages: [K]; age_labels: AgeLabels or a 1-D
    tensor of n increasing whole ages -> R: [n, c] (same device and dtype as
    ``features``); with ``return_info=True``, ``(R, ReferenceInfo)``.

    Row k of R is the features of the sample with true age == label k and the
    smallest |true - predicted| error (ties: the smallest sample index). The
    selection is vectorised: each sample's label comes from a lookup table, then
    two ``scatter_reduce(amin)`` passes find the smallest error per label and the
    smallest index among the samples reaching it (samples whose age is no label
    go to an extra slot that is dropped). It costs O(K) and runs on the device of
    ``features``.
    Taught in ``notebooks/04_reference_selection.ipynb``.
    """
    features = _checks.matrix("features", features)
    if not features.is_floating_point():
        raise TypeError(f"features must be floating point, got dtype {features.dtype}.")
    device = features.device
    pred_ages = _checks.vector("pred_ages", pred_ages, allow_empty=True).to(device)
    true_ages = _checks.vector("true_ages", true_ages, allow_empty=True).to(device)
    count = _checks.same_length(features=features, pred_ages=pred_ages, true_ages=true_ages)
    if count == 0:
        raise ValueError("features, pred_ages and true_ages are empty; select references after a training pass.")
    values = label_values(age_labels).to(device)
    n = values.numel()

    # Slot of each sample: the position of its true age among the labels, or the
    # extra slot n (collected, then dropped) when that age is no label.
    slot = _label_slots(true_ages, values)

    # Line 2: errors E = |A - A_hat| (computed once, so equal errors compare equal).
    errors = pred_ages.to(torch.float64, copy=True).sub_(true_ages).abs_()  # float64, in place; |p - t| == |t - p|
    # Lines 3-9, all labels at once: the smallest error per slot ...
    best_error = torch.full((n + 1,), float("inf"), dtype=errors.dtype, device=device)
    best_error = best_error.scatter_reduce(0, slot, errors, reduce="amin")
    # ... and among the samples reaching it (few), the smallest index.
    winners = (errors == best_error.index_select(0, slot)).nonzero().squeeze(1)
    source = torch.full((n + 1,), count, dtype=torch.int64, device=device)
    source = source.scatter_reduce(0, slot.index_select(0, winners), winners, reduce="amin")
    source, best_error = source[:n], best_error[:n]

    present = source < count
    if not bool(present.any()):
        raise ValueError(
            f"No sample's true age is one of the {n} age labels ({int(values[0])}..{int(values[-1])}); "
            "check that true_ages and age_labels come from the same data set."
        )
    missing_ages, filled_from = [], {}
    if not bool(present.all()):
        # Nearest present label; argmin keeps the first (younger) on equal distance.
        present_values = values[present]
        distance = (values[~present, None] - present_values[None, :]).abs()
        nearest = distance.argmin(dim=1)
        source[~present] = source[present][nearest]
        best_error[~present] = best_error[present][nearest]
        missing_ages = values[~present].tolist()
        filled_from = dict(zip(missing_ages, present_values[nearest].tolist()))
        shown = ", ".join(f"{age} <- {src}" for age, src in list(filled_from.items())[:10])
        more = f" and {len(missing_ages) - 10} more" if len(missing_ages) > 10 else ""
        warnings.warn(
            f"{len(missing_ages)} age label(s) have no training sample; each copies the reference of the "
            f"nearest present age (missing <- used): {shown}{more}.",
            stacklevel=2,
        )

    references = features[source]
    if not torch.isfinite(references).all():  # only the chosen rows matter (and checking them is cheap)
        raise ValueError("The selected reference features contain NaN or infinite values; the training run has diverged.")
    if not return_info:
        return references
    info = ReferenceInfo(
        source_index=source,
        reference_errors=best_error.to(torch.float32),
        missing_ages=missing_ages,
        filled_from=filled_from,
    )
    return references, info


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


class ReferenceBank:
    """Collects the training pass's features and ages, and selects the next epoch's references.

        bank = ReferenceBank(labels)                 # mode="latest" (DESIGN.md)
        for epoch in range(epochs):
            for images, ages in loader:
                out = model(images, references=bank.references)   # None in epoch 1
                bank.add(out.features, out.age, ages)
            bank.end_epoch(val_mae=...)              # references for the next epoch

    ``mode="latest"``: the references come from the epoch just finished.
    ``mode="best_val"``: they come from the epoch with the lowest validation MAE so far
    (pass ``val_mae`` to :meth:`end_epoch`); an epoch that does not improve keeps
    the older references. Only the selected [n, c] map is kept, not every feature.

    ``store``: where collected tensors live, ``None`` (default) keeps them on the
    device they come from (no copy, no synchronisation), or e.g. ``"cpu"``.
    Taught in ``notebooks/04_reference_selection.ipynb``.
    """

    modes = ("latest", "best_val")

    def __init__(self, age_labels, mode: str = "latest", store: str | torch.device | None = None):
        self.age_values = label_values(age_labels).clone()
        self.mode = _checks.choice("mode", mode, self.modes)
        self.store = None if store is None else torch.device(store)
        self.references: torch.Tensor | None = None
        self.info: ReferenceInfo | None = None
        self.epochs_seen = 0
        self.best_val_mae: float | None = None
        self.reference_epoch: int | None = None
        self._parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def __len__(self) -> int:
        """Number of samples collected in the current epoch."""
        return sum(part[0].shape[0] for part in self._parts)

    def add(self, features: torch.Tensor, pred_ages: torch.Tensor, true_ages: torch.Tensor) -> None:
        """Keep a training batch's features [b, c], predicted ages [b] and true ages [b] (detached)."""
        features = _checks.matrix("features", features)
        pred_ages = _checks.as_tensor("pred_ages", pred_ages).reshape(-1)
        true_ages = _checks.as_tensor("true_ages", true_ages).reshape(-1)
        _checks.same_length(features=features, pred_ages=pred_ages, true_ages=true_ages)
        if self._parts and features.shape[1] != self._parts[0][0].shape[1]:
            raise ValueError(
                f"features has {features.shape[1]} channels but earlier batches had {self._parts[0][0].shape[1]}."
            )
        device = features.device if self.store is None else self.store
        self._parts.append(tuple(t.detach().to(device) for t in (features, pred_ages, true_ages)))

    def reset(self) -> None:
        """Forget what was collected this epoch (the references stay)."""
        self._parts = []

    def end_epoch(
        self,
        val_mae: float | None = None,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor | None:
        """Select the references for the next epoch from what was collected; return them.

        gather: under distributed training, a function taking a tensor and returning it
        concatenated over all ranks (dim 0). It is applied to the features, predicted
        and true ages before selection, so every rank selects the same references
        from all samples. Default: the identity (one process).
        """
        if not self._parts:
            raise ValueError("Nothing was collected this epoch; call bank.add(features, pred_ages, true_ages) per batch.")
        if self.mode == "best_val" and val_mae is None:
            raise ValueError('mode="best_val" needs end_epoch(val_mae=...), the validation MAE of this epoch.')
        if val_mae is not None:
            val_mae = float(val_mae)
            if val_mae != val_mae:
                raise ValueError("val_mae is NaN; the validation pass failed.")
        gather = _identity if gather is None else gather
        features, pred_ages, true_ages = (gather(torch.cat(column)) for column in zip(*self._parts))
        self._parts = []
        self.epochs_seen += 1
        improved = val_mae is not None and (self.best_val_mae is None or val_mae < self.best_val_mae)
        if improved:
            self.best_val_mae = val_mae
        if self.mode == "latest" or improved:
            self.references, self.info = select_references(
                features, pred_ages, true_ages, self.age_values, return_info=True
            )
            self.reference_epoch = self.epochs_seen
        return self.references

    def state_dict(self) -> dict:
        """Tensors and plain values only, so checkpoints load with ``torch.load(weights_only=True)``."""
        info = self.info
        return {
            "mode": self.mode,
            "age_values": self.age_values.cpu(),
            "references": None if self.references is None else self.references.detach().cpu(),
            "epochs_seen": self.epochs_seen,
            "best_val_mae": self.best_val_mae,
            "reference_epoch": self.reference_epoch,
            "source_index": None if info is None else info.source_index.cpu(),
            "reference_errors": None if info is None else info.reference_errors.cpu(),
            "missing_ages": [] if info is None else list(info.missing_ages),
            "filled_from": [] if info is None else [list(pair) for pair in info.filled_from.items()],
        }

    def load_state_dict(self, state: dict, device: str | torch.device | None = None) -> None:
        """Restore from :meth:`state_dict`; ``device`` for the references (default: ``store``, else CPU)."""
        if state.get("mode") != self.mode:
            raise ValueError(f"The saved bank used mode={state.get('mode')!r}, this one mode={self.mode!r}.")
        saved_values = torch.as_tensor(state["age_values"])
        if not torch.equal(saved_values.cpu(), self.age_values.cpu()):
            raise ValueError(
                f"The saved bank has {saved_values.numel()} age labels that differ from this bank's "
                f"{self.age_values.numel()}; build the bank with the same AgeLabels."
            )
        device = device if device is not None else (self.store or "cpu")
        references = state["references"]
        self.references = None if references is None else references.to(device)
        self.epochs_seen = int(state["epochs_seen"])
        self.best_val_mae = None if state["best_val_mae"] is None else float(state["best_val_mae"])
        self.reference_epoch = state["reference_epoch"]
        if state["source_index"] is None:
            self.info = None
        else:
            self.info = ReferenceInfo(
                source_index=state["source_index"].to(device),
                reference_errors=state["reference_errors"].to(device),
                missing_ages=list(state["missing_ages"]),
                filled_from={int(a): int(b) for a, b in state["filled_from"]},
            )
        self._parts = []
