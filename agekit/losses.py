"""Losses of both methods, each next to its equation.

RAPL (Amirullaeva & Han, 2024):
  eq. 1  expected value refinement (EVR): age = sum_i l_i * softmax(logits)_i
  eq. 2  L_age = mean |a - a_hat|
  eq. 3  L_gender = cross-entropy over two classes
  eq. 7  L_position = cross-entropy over the n age positions
  eq. 8  L_total = L_age + lambda * L_gender + mu * L_position

Siamese baseline (Jeong et al., 2018), eq. 4 of that paper, over all pairs of a batch:
  L = (1 - Z) * 2Q exp(-2.77 D / Q) + Z * (2 / Q) * D^2,
  D = L1 distance of the two embeddings, Z = 1 when the pair counts as the same class.

Taught in ``notebooks/02_metrics_and_evr.ipynb`` (eqs. 1-2),
``notebooks/06_rapl_training.ipynb`` (eqs. 3, 7, 8) and
``notebooks/07_siamese_metric_learning.ipynb`` (revised contrastive loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agekit import _checks


def expected_age(logits: torch.Tensor, age_values: torch.Tensor) -> torch.Tensor:
    """eq. 1: the softmax-weighted mean of the age labels.

    logits: [b, n], age_values: [n] -> ages [b] (float).
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [batch, n_ages], got shape {tuple(logits.shape)}.")
    age_values = torch.as_tensor(age_values, device=logits.device)
    if age_values.dim() != 1 or age_values.numel() != logits.shape[1]:
        raise ValueError(
            f"age_values must have one entry per logit column ({logits.shape[1]}), "
            f"got shape {tuple(age_values.shape)}."
        )
    probabilities = torch.softmax(logits.float(), dim=1)
    return probabilities @ age_values.to(probabilities.dtype)


def age_l1_loss(pred_ages: torch.Tensor, true_ages: torch.Tensor) -> torch.Tensor:
    """eq. 2: mean absolute error between predicted and true ages, [b], [b] -> scalar."""
    if pred_ages.shape != true_ages.shape:
        raise ValueError(
            f"pred_ages {tuple(pred_ages.shape)} and true_ages {tuple(true_ages.shape)} must both be [b]; "
            "a silent broadcast would compare every prediction with every age."
        )
    return (pred_ages.float() - true_ages.to(pred_ages.device).float()).abs().mean()


def gender_loss(gender_logits: torch.Tensor, genders: torch.Tensor) -> torch.Tensor:
    """eq. 3: cross-entropy of the gender head. Samples with gender -1 (unknown) are ignored.

    gender_logits: [b, 2], genders: [b] with 0 male, 1 female, -1 unknown -> scalar
    (0 when no sample in the batch has a known gender).
    """
    genders = genders.to(gender_logits.device)
    known = genders >= 0
    if not bool(known.any()):
        return gender_logits.sum() * 0.0
    return F.cross_entropy(gender_logits[known].float(), genders[known])


def position_loss(position_logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """eq. 7: cross-entropy of the relative age position head.

    position_logits: [b, n], positions: [b] (indices into the age labels) -> scalar.
    """
    return F.cross_entropy(position_logits.float(), positions)


def joint_loss(
    age: torch.Tensor,
    gender: torch.Tensor | None = None,
    position: torch.Tensor | None = None,
    lam: float = 1.0,
    mu: float = 1.0,
) -> torch.Tensor:
    """eq. 8: L_total = L_age + lambda * L_gender + mu * L_position.

    A term that is ``None`` (no gender head, or the position branch still off in
    the first epoch) contributes nothing.
    """
    total = age
    if gender is not None:
        total = total + lam * gender
    if position is not None:
        total = total + mu * position
    return total


def pairwise_l1(embeddings: torch.Tensor) -> torch.Tensor:
    """L1 distance between every two rows: [b, d] -> [b, b] (float64 stays float64)."""
    x = embeddings if embeddings.dtype == torch.float64 else embeddings.float()
    return torch.cdist(x, x, p=1)


def revised_contrastive_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float, q: float = 100.0
) -> torch.Tensor:
    """The revised contrastive loss of Jeong et al. (2018), averaged over all pairs i < j.

    embeddings: [b, d]; labels: [b] (ages, or genders with ``margin=0``).
    A pair is the same class (Z = 1) when |label_i - label_j| <= margin; then it pays
    (2/Q) D^2, pulling the two together. Otherwise it pays 2Q exp(-2.77 D / Q),
    which pushes them apart and fades once D nears Q. Memory is O(b^2).
    """
    embeddings = _checks.as_tensor("embeddings", embeddings)
    labels = _checks.as_tensor("labels", labels)
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be [batch, dim], got shape {tuple(embeddings.shape)}.")
    _checks.same_length(embeddings=embeddings, labels=labels)
    if embeddings.shape[0] < 2:
        raise ValueError(f"The loss compares pairs, so the batch needs at least 2 samples, got {embeddings.shape[0]}.")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0 (years of tolerance), got {margin}.")
    if not q > 0:
        raise ValueError(f"q must be positive, got {q}.")
    distance = pairwise_l1(embeddings)
    labels = labels.to(embeddings.device).float()
    same = ((labels[:, None] - labels[None, :]).abs() <= margin).float()
    pair_loss = (1.0 - same) * 2.0 * q * torch.exp(-2.77 * distance / q) + same * (2.0 / q) * distance.square()
    b = embeddings.shape[0]
    upper = torch.triu(torch.ones(b, b, dtype=torch.bool, device=embeddings.device), diagonal=1)
    return pair_loss[upper].mean()
