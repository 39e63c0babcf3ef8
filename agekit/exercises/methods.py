"""Checks for the methods: RAPL and the Siamese baseline.

RAPL's positions, expected age, age weights, reweighting, references and
losses; the Siamese baseline's kNN prediction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from agekit.exercises.base import _close, _matches_agekit, _over_trials


@_over_trials(_matches_agekit("your expected value refinement"))
def check_expected_age(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (02): ``student(logits [b, n], age_values [n]) -> ages [b]`` (eq. 1)."""
    from agekit.losses import expected_age

    n = 5 + trial * 7
    logits = torch.randn(8, n, generator=g) * 3
    values = torch.sort(torch.randperm(100, generator=g)[:n]).values.float()
    _close(
        "expected age", student(logits, values), expected_age(logits, values),
        hint="Softmax over the age dimension, then sum probability * label value.",
    )


@_over_trials(_matches_agekit("your age weights W"))
def check_age_weights(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (05): ``student(references [n, c], p [n]) -> W [c, n]`` (eqs. 4-5)."""
    n, c = 6 + trial, 4 + 2 * trial
    references, p = torch.randn(n, c, generator=g), torch.randn(n, generator=g)
    expected = torch.sigmoid(references.T * p)  # eq. 4 then eq. 5, written once here as the key
    _close("W", student(references, p), expected, hint="Permute R to [c, n], scale column j by p_j, then sigmoid.")


@_over_trials(_matches_agekit("your age-based reweighting"))
def check_reweighting(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (05): ``student(x [b, c], references [n, c], p [n]) -> x_hat [b, c, n]`` (eqs. 4-6)."""
    from agekit.models import AgeReweighting

    b, n, c = 3, 5 + trial, 4 + trial
    x, references = torch.randn(b, c, generator=g), torch.randn(n, c, generator=g)
    module = AgeReweighting(n)
    with torch.no_grad():
        module.p.copy_(torch.randn(n, generator=g))
        expected = module(x, references)
    _close(
        "x_hat", student(x, references, module.p.detach().clone()), expected,
        hint="Broadcast x[:, :, None] against W[None, :, :].",
    )


@_over_trials(_matches_agekit("your reference selection (Algorithm 1)"))
def check_select_references(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (04): ``student(features [K, c], pred_ages [K], true_ages [K], label_values [n]) -> R [n, c]``.

    Every label has at least one sample here (missing ages are the lesson's next step).
    """
    from agekit.references import select_references

    values = torch.arange(10, 20)
    true = torch.cat([values, values[torch.randint(0, 10, (40,), generator=g)]])
    pred = true.float() + torch.randn(len(true), generator=g) * 3
    if trial % 2:  # errors on a half-year grid: faces of one age tie, and the first of them must win
        pred = true.float() + torch.round(torch.randn(len(true), generator=g) * 2) / 2
    features = torch.randn(len(true), 6, generator=g)
    _close(
        "R", student(features, pred, true, values), select_references(features, pred, true, values),
        hint="For each label, among samples with that true age, take the features of the smallest |true - pred|; "
             "on a tie, the first such face (lowest index) wins.",
    )


@_over_trials(_matches_agekit("your revised contrastive loss"))
def check_revised_contrastive_loss(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (07): ``student(embeddings [b, d], ages [b], margin, q) -> scalar``."""
    from agekit.losses import revised_contrastive_loss

    embeddings = torch.randn(12, 4, generator=g) * 10
    ages = torch.randint(20, 40, (12,), generator=g)
    margin, q = float(trial), [1.0, 10.0, 100.0][trial % 3]
    _close(
        "loss", student(embeddings, ages, margin, q), revised_contrastive_loss(embeddings, ages, margin, q),
        atol=1e-4, hint="Use the L1 distance, |age_i - age_j| <= margin for 'same', and average over pairs i < j.",
    )


@_over_trials(_matches_agekit("your kNN age estimate"), trials=3)
def check_knn_predict(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (07): ``student(query [m, d], gallery [g, d], gallery_ages [g], k) -> ages [m]``."""
    from agekit.knn import knn_predict

    query, gallery = torch.randn(7, 5, generator=g), torch.randn(40, 5, generator=g)
    ages = torch.randint(1, 90, (40,), generator=g)
    k = 1 + 3 * trial
    _close(
        "kNN ages", student(query, gallery, ages, k), knn_predict(query, gallery, ages, k=k),
        hint="L1 distances to every gallery row, the k smallest, then the mean of their ages.",
    )


@_over_trials(_matches_agekit("your ages -> positions"))
def check_to_positions(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (01): ``student(ages [m], label_values [n]) -> positions int64 [m]`` (RAPL Fig. 2)."""
    from agekit.data import AgeLabels

    n = 10 + 5 * trial
    values = torch.sort(torch.randperm(90, generator=g)[:n] + 1).values  # sorted, with missing ages
    ages = values[torch.randint(0, n, (30,), generator=g)]
    ages[0], ages[1] = values[0], values[-1]
    got = torch.as_tensor(student(ages, values))
    if got.is_floating_point():
        raise AssertionError(f"positions must be whole numbers (int64 indices), got {got.dtype}.")
    _close(
        "positions", got, AgeLabels(values).to_positions(ages),
        hint="A position is the index of the age in the sorted label list, not age - youngest age: "
             "labels skip the ages missing from training (Fig. 2).",
    )


@_over_trials(_matches_agekit("your joint loss"))
def check_joint_loss(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (06): ``student(age, gender, position, lam, mu) -> scalar`` (RAPL eq. 8).

    ``gender`` or ``position`` may be None (no gender head; the position branch in epoch 1):
    such a term contributes nothing.
    """
    from agekit.losses import joint_loss

    age, gender, position = torch.rand(3, generator=g) * torch.tensor([10.0, 1.0, 5.0])
    lam, mu = (float(v) for v in torch.rand(2, generator=g) * 2)
    for terms in ((gender, position), (None, position), (gender, None), (None, None)):
        try:
            got = student(age, *terms, lam, mu)
        except TypeError as error:
            missing = " and ".join(name for name, t in zip(("gender", "position"), terms) if t is None) or "no term"
            raise AssertionError(
                f"Your function failed when {missing} is None: {error}. A term that is None "
                "(no gender head, or epoch 1 without references) contributes nothing."
            ) from None
        _close(
            f"L_total (lam={lam:.3f}, mu={mu:.3f}, gender {'None' if terms[0] is None else 'given'}, "
            f"position {'None' if terms[1] is None else 'given'})",
            float(got), float(joint_loss(age, *terms, lam=lam, mu=mu)),
            hint="L_total = L_age + lam * L_gender + mu * L_position: lam weighs gender, mu weighs "
                 "position, nothing is averaged, and a None term is left out.",
        )
