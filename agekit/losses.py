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

Each method's loss is assembled here too: :func:`rapl_loss` (eq. 8) and
:func:`siamese_loss` (Section 2.6); both return (total, parts) with the detached
scalar parts "total" and each term that counts.

Taught in ``notebooks/02_metrics_and_evr.ipynb`` (eqs. 1-2),
``notebooks/06_rapl_training.ipynb`` (eqs. 3, 7, 8) and
``notebooks/07_siamese_metric_learning.ipynb`` (revised contrastive loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agekit import _checks
from agekit.config import CONTRASTIVE_Q, SIAMESE_MARGIN


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
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float, q: float = CONTRASTIVE_Q
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


# ----------------------------------------------------------------------------- each method's loss


def rapl_loss(
    output,
    ages: torch.Tensor,
    genders: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
    lam: float = 1.0,
    mu: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """eq. 8 over the parts ``output`` has: L = L_age (eq. 2) + lam * L_gender (eq. 3) + mu * L_position (eq. 7).

    ages: [b] true ages; genders: [b] 0 male, 1 female, -1 unknown, or None (no
    gender labels, as in CACD); positions: [b] true age positions
    (``labels.to_positions(ages)``), needed when the output has position logits.
    Returns (total, parts) where parts holds detached scalars "age", "total", and
    "gender" / "position" when those terms count. When the model has a gender head
    but no sample of the batch has a known gender, the gender term is a zero that
    stays connected to the head (so distributed training sees every parameter used).
    Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    device = output.age.device
    l_age = age_l1_loss(output.age, ages)  # eq. 2
    parts = {"age": l_age.detach()}
    l_gender = l_position = None
    if output.gender_logits is not None:
        if genders is None:
            genders = torch.full((output.gender_logits.shape[0],), -1, dtype=torch.int64, device=device)
        genders = genders.to(device=device, dtype=torch.int64)
        l_gender = gender_loss(output.gender_logits, genders)  # eq. 3 (zero if all unknown)
        if bool((genders >= 0).any()):
            parts["gender"] = l_gender.detach()
    if output.position_logits is not None:
        if positions is None:
            raise ValueError(
                "The output has position logits, so rapl_loss needs positions: pass "
                "positions=labels.to_positions(ages)."
            )
        l_position = position_loss(output.position_logits, positions.to(device=device, dtype=torch.int64))  # eq. 7
        parts["position"] = l_position.detach()
    total = joint_loss(l_age, l_gender, l_position, lam=lam, mu=mu)  # eq. 8
    parts["total"] = total.detach()
    return total, parts


def siamese_loss(output, ages, genders=None, margin: float = SIAMESE_MARGIN, q: float = CONTRASTIVE_Q):
    """Multi-task loss of Section 2.6: age comparison + gender comparison, summed.

    age term:    revised contrastive loss on the age embedding; a pair is the same
                 class when its ages differ by at most ``margin`` years;
    gender term: the same loss on the gender embedding with margin 0 on genders, so
                 only same-gender pairs count as the same class;
    total = age + gender.

    margin: whole years of tolerance, inclusive (|a_i - a_j| <= margin is "same").
    The default 3 matches Fig. 7 and the experiment section's "difference smaller
    than 4" on whole ages; that section calls its setting "margin 4", which under
    the inclusive rule of Fig. 7 would mean differences up to 4.

    ages: [b]; genders: [b] with 0 male, 1 female, -1 unknown, or None. Samples of
    unknown gender are left out of the gender term only. The gender term is 0 when
    the model has no gender embedding, when genders is None, or when fewer than two
    samples of the batch have a known gender (there is no pair to compare).

    Returns (total, parts) as :func:`rapl_loss` does: parts holds detached scalars
    "age", "total" and, when the model has a gender embedding, "gender"; total = age + gender.

    Taught in ``notebooks/07_siamese_metric_learning.ipynb``.
    """
    from agekit.models.siamese import SiameseOutput

    if not isinstance(output, SiameseOutput):
        raise TypeError(f"output must be the SiameseOutput of a SiameseNet, got {type(output).__name__}.")
    age_term = revised_contrastive_loss(output.age_embedding, ages, margin, q)
    gender_term = age_term.new_zeros(())
    if output.gender_embedding is not None and genders is not None:
        genders = _checks.vector("genders", genders)
        _checks.same_length(gender_embedding=output.gender_embedding, genders=genders)
        known = (genders >= 0).to(output.gender_embedding.device)
        if int(known.sum()) >= 2:
            gender_term = revised_contrastive_loss(
                output.gender_embedding[known], genders.to(known.device)[known], margin=0, q=q
            )
    total = age_term + gender_term
    parts = {"age": age_term.detach(), "total": total.detach()}
    if output.gender_embedding is not None:
        parts["gender"] = gender_term.detach()
    return total, parts
