"""Evaluation metrics, each a mean over *samples* (never a mean of batch means).

RAPL (Amirullaeva & Han, 2024):
  eq. 9   MAE = sum |y - y_hat| / N
  eq. 10  CS_l = N_l / N * 100 %, N_l = samples with |error| <= l (l = 5)
  eq. 11  gender accuracy, percent
  eq. 12  confidence score: share of samples whose EVR age and position-head age
          differ by at most t years, percent (the paper uses 10 random test faces;
          here any number of samples).

Taught in ``notebooks/02_metrics_and_evr.ipynb`` and ``notebooks/06_rapl_training.ipynb``.
"""

from __future__ import annotations

import torch

from agekit import _checks


def _pair(pred, true, pred_name: str = "pred", true_name: str = "true") -> tuple[torch.Tensor, torch.Tensor]:
    pred = _checks.vector(pred_name, pred).to(torch.float64)
    true = _checks.vector(true_name, true).to(torch.float64)
    _checks.same_length(**{pred_name: pred, true_name: true})
    return pred, true.to(pred.device)


def mae(pred, true) -> float:
    """Mean absolute error in years (eq. 9). pred, true: [N] -> float."""
    pred, true = _pair(pred, true)
    return float((pred - true).abs().mean())


def rmse(pred, true) -> float:
    """Root mean squared error in years. pred, true: [N] -> float."""
    pred, true = _pair(pred, true)
    return float((pred - true).square().mean().sqrt())


def cumulative_score(pred, true, tolerance: float = 5) -> float:
    """CS(tolerance) in percent (eq. 10): share of samples with |pred - true| <= tolerance."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0 years, got {tolerance}.")
    pred, true = _pair(pred, true)
    return float(((pred - true).abs() <= tolerance).to(torch.float64).mean() * 100.0)


def accuracy(pred_labels, true_labels) -> float:
    """Classification accuracy in percent (eq. 11), e.g. for gender. [N], [N] -> float.

    Samples whose true label is negative (unknown gender) are left out.
    """
    pred, true = _pair(pred_labels, true_labels, "pred_labels", "true_labels")
    known = true >= 0
    if not bool(known.any()):
        raise ValueError("true_labels has no known (non-negative) label, so accuracy is undefined.")
    return float((pred[known] == true[known]).to(torch.float64).mean() * 100.0)


def confidence_score(est_ages, position_ages, tolerance: float) -> float:
    """eq. 12, in percent: how often the EVR age and the position-head age agree within ``tolerance``.

    est_ages: [N] ages from expected value refinement; position_ages: [N] ages read
    off the predicted positions (``AgeLabels.to_ages(argmax)``).
    """
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0 years, got {tolerance}.")
    est, pos = _pair(est_ages, position_ages, "est_ages", "position_ages")
    return float(((est - pos).abs() <= tolerance).to(torch.float64).mean() * 100.0)


def error_by_age(pred, true, bin_width: int = 1) -> list[dict]:
    """MAE per true age (or per bin of ``bin_width`` years), as rows for a table or a plot.

    Returns [{"age": low edge, "count": k, "mae": ..., "bias": mean(pred - true)}, ...]
    for every bin that holds at least one sample, youngest first.
    """
    bin_width = _checks.positive_int("bin_width", bin_width)
    pred, true = _pair(pred, true)
    bins = torch.div(true.round().long(), bin_width, rounding_mode="floor")
    keys, inverse = torch.unique(bins, return_inverse=True)
    count = torch.bincount(inverse, minlength=len(keys)).to(torch.float64)
    error = pred - true
    abs_sum = torch.zeros(len(keys), dtype=torch.float64).index_add_(0, inverse, error.abs())
    sum_ = torch.zeros(len(keys), dtype=torch.float64).index_add_(0, inverse, error)
    return [
        {"age": int(k) * bin_width, "count": int(c), "mae": float(a / c), "bias": float(s / c)}
        for k, c, a, s in zip(keys.tolist(), count.tolist(), abs_sum.tolist(), sum_.tolist())
    ]


def summarize(pred, true, pred_genders=None, true_genders=None) -> dict[str, float]:
    """The numbers every report prints: MAE, CS(5), RMSE, and gender accuracy when given."""
    result = {"mae": mae(pred, true), "cs5": cumulative_score(pred, true, 5), "rmse": rmse(pred, true)}
    if pred_genders is not None and true_genders is not None:
        known = torch.as_tensor(true_genders) >= 0
        if bool(known.any()):
            result["gender_acc"] = accuracy(pred_genders, true_genders)
    return result
