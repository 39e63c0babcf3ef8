"""What one epoch measures (:class:`EpochMeter`) and how the log names each metric (:func:`format_metrics`).

The epoch lines and the test line use the same names and units:
``val MAE 9.31  CS5 37.1%`` and ``test (best epoch 3): MAE 8.80  CS5 40.2%  RMSE 11.02``.
"""

from __future__ import annotations

import math

import torch

# How the epoch lines and the test line name each metric, and in which unit.
METRIC_LABELS = {"mae": ("MAE", "{:.2f}"), "cs5": ("CS5", "{:.1f}%"), "rmse": ("RMSE", "{:.2f}"),
                 "gender_acc": ("gender", "{:.1f}%"), "confidence5": ("confidence5", "{:.1f}%")}


def format_metrics(metrics: dict, names=tuple(METRIC_LABELS)) -> str:
    """``MAE 3.21  CS5 40.0%  gender 91.2%`` for the ``names`` that ``metrics`` holds."""
    shown = [(METRIC_LABELS[n][0], METRIC_LABELS[n][1].format(metrics[n])) for n in names if n in metrics]
    return "  ".join(f"{label} {value}" for label, value in shown)


class EpochMeter:
    """Running sums of one epoch: each loss part weighted by batch size, and the absolute age errors.

    A step's sums are one float64 vector (so one all-reduce and one copy to the host
    per step): [part * b for each part, b where the part was present, sum |error|, count].
    """

    parts = ("total", "age", "gender", "position")

    def __init__(self):
        self.sums = torch.zeros(2 * len(self.parts) + 2, dtype=torch.float64)

    def step_sums(self, parts: dict, predicted: torch.Tensor | None, ages: torch.Tensor) -> torch.Tensor:
        """This step's vector, float32 on the device (MPS has no float64); accumulated in float64 on the host."""
        b = float(ages.numel())
        zero = parts["total"].new_zeros((), dtype=torch.float32)
        values = [parts[n].float() * b if n in parts else zero for n in self.parts]
        present = [zero + (b if n in parts else 0.0) for n in self.parts]
        if predicted is None:
            error, count = zero, zero
        else:
            error, count = (predicted.detach().float() - ages).abs().sum(), zero + b
        return torch.stack(values + present + [error, count])

    def broken_part(self, sums: torch.Tensor) -> str | None:
        """The name of a NaN or infinite loss part (a named part rather than "total"), or None."""
        broken = [n for n, v in zip(self.parts, sums[:len(self.parts)].tolist()) if not math.isfinite(v)]
        named = [n for n in broken if n != "total"]
        return (named or broken or [None])[0]

    def add(self, sums: torch.Tensor) -> None:
        self.sums += sums.double()

    def _mean(self, i: int) -> float | None:
        weight = float(self.sums[len(self.parts) + i])
        return float(self.sums[i]) / weight if weight > 0 else None

    def _mae(self) -> float | None:
        return float(self.sums[-2] / self.sums[-1]) if self.sums[-1] > 0 else None

    def postfix(self) -> dict:
        """For the progress bar: running loss and, when the method predicts ages in training, running MAE."""
        shown = {"loss": f"{self._mean(0):.3f}"}
        if self._mae() is not None:
            shown["mae"] = f"{self._mae():.2f}"
        return shown

    def record(self) -> dict:
        """loss, loss_<part> (mean per face), train_mae and train_images of the epoch."""
        record = {}
        for i, name in enumerate(self.parts):
            if self._mean(i) is not None:
                record["loss" if name == "total" else f"loss_{name}"] = self._mean(i)
        if self._mae() is not None:
            record["train_mae"] = self._mae()
        record["train_images"] = int(self.sums[len(self.parts)])
        return record
