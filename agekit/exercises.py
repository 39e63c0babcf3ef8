"""Automatic checks for the notebooks' exercises.

Each ``check_*`` function calls the student's implementation on random inputs,
compares it with the package's own, prints a short success line, and otherwise
raises an ``AssertionError`` that says what differed and gives a hint. The
package's version is the reference because the tests already compare it with
slow loops and worked examples.

Used by every notebook's *Exercises* section.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _close(name: str, got, expected, atol: float = 1e-5, hint: str = "") -> None:
    got = torch.as_tensor(got)
    expected = torch.as_tensor(expected)
    if got.shape != expected.shape:
        raise AssertionError(f"{name}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}. {hint}")
    if not torch.allclose(got.double(), expected.double(), atol=atol, rtol=1e-4):
        worst = (got.double() - expected.double()).abs().max().item()
        raise AssertionError(f"{name}: values differ from the reference (largest difference {worst:.4g}). {hint}")


def _passed(what: str) -> None:
    print(f"Correct: {what} matches agekit on random inputs.")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def check_mae(student: Callable, trials: int = 5) -> None:
    """Exercise (02): ``student(pred, true) -> float``, the mean absolute error (eq. 9)."""
    from agekit.metrics import mae

    for trial in range(trials):
        g = _generator(trial)
        pred, true = torch.rand(50, generator=g) * 80, torch.randint(0, 80, (50,), generator=g)
        _close("MAE", float(student(pred, true)), mae(pred, true), hint="Average |pred - true| over all samples.")
    _passed("your MAE")


def check_cumulative_score(student: Callable, trials: int = 5) -> None:
    """Exercise (02): ``student(pred, true, tolerance) -> percent`` (eq. 10)."""
    from agekit.metrics import cumulative_score

    for trial in range(trials):
        g = _generator(trial)
        pred, true = torch.randint(0, 80, (60,), generator=g).float(), torch.randint(0, 80, (60,), generator=g)
        pred[:5] = true[:5].float() + 5  # exactly on the tolerance: these count
        _close(
            "CS", float(student(pred, true, 5)), cumulative_score(pred, true, 5),
            hint="Count errors <= tolerance (not <), and give a percentage.",
        )
    _passed("your cumulative score")


def check_expected_age(student: Callable, trials: int = 5) -> None:
    """Exercise (02): ``student(logits [b, n], age_values [n]) -> ages [b]`` (eq. 1)."""
    from agekit.losses import expected_age

    for trial in range(trials):
        g = _generator(trial)
        n = 5 + trial * 7
        logits = torch.randn(8, n, generator=g) * 3
        values = torch.sort(torch.randperm(100, generator=g)[:n]).values.float()
        _close(
            "expected age", student(logits, values), expected_age(logits, values),
            hint="Softmax over the age dimension, then sum probability * label value.",
        )
    _passed("your expected value refinement")


def check_age_weights(student: Callable, trials: int = 5) -> None:
    """Exercise (05): ``student(references [n, c], p [n]) -> W [c, n]`` (eqs. 4-5)."""
    for trial in range(trials):
        g = _generator(trial)
        n, c = 6 + trial, 4 + 2 * trial
        references, p = torch.randn(n, c, generator=g), torch.randn(n, generator=g)
        expected = torch.sigmoid(references.T * p)  # eq. 4 then eq. 5, written once here as the key
        _close("W", student(references, p), expected, hint="Permute R to [c, n], scale column j by p_j, then sigmoid.")
    _passed("your age weights W")


def check_reweighting(student: Callable, trials: int = 5) -> None:
    """Exercise (05): ``student(x [b, c], references [n, c], p [n]) -> x_hat [b, c, n]`` (eqs. 4-6)."""
    from agekit.models import AgeReweighting

    for trial in range(trials):
        g = _generator(trial)
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
    _passed("your age-based reweighting")


def check_select_references(student: Callable, trials: int = 5) -> None:
    """Exercise (04): ``student(features [K, c], pred_ages [K], true_ages [K], label_values [n]) -> R [n, c]``.

    Every label has at least one sample here (missing ages are the lesson's next step).
    """
    from agekit.references import select_references

    for trial in range(trials):
        g = _generator(trial)
        values = torch.arange(10, 20)
        true = torch.cat([values, values[torch.randint(0, 10, (40,), generator=g)]])
        pred = true.float() + torch.randn(len(true), generator=g) * 3
        features = torch.randn(len(true), 6, generator=g)
        _close(
            "R", student(features, pred, true, values), select_references(features, pred, true, values),
            hint="For each label, among samples with that true age, take the features of the smallest |true - pred|.",
        )
    _passed("your reference selection (Algorithm 1)")


def check_revised_contrastive_loss(student: Callable, trials: int = 5) -> None:
    """Exercise (07): ``student(embeddings [b, d], ages [b], margin, q) -> scalar``."""
    from agekit.losses import revised_contrastive_loss

    for trial in range(trials):
        g = _generator(trial)
        embeddings = torch.randn(12, 4, generator=g) * 10
        ages = torch.randint(20, 40, (12,), generator=g)
        margin, q = float(trial), [1.0, 10.0, 100.0][trial % 3]
        _close(
            "loss", student(embeddings, ages, margin, q), revised_contrastive_loss(embeddings, ages, margin, q),
            atol=1e-4, hint="Use the L1 distance, |age_i - age_j| <= margin for 'same', and average over pairs i < j.",
        )
    _passed("your revised contrastive loss")


def check_knn_predict(student: Callable, trials: int = 3) -> None:
    """Exercise (07): ``student(query [m, d], gallery [g, d], gallery_ages [g], k) -> ages [m]``."""
    from agekit.knn import knn_predict

    for trial in range(trials):
        g = _generator(trial)
        query, gallery = torch.randn(7, 5, generator=g), torch.randn(40, 5, generator=g)
        ages = torch.randint(1, 90, (40,), generator=g)
        k = 1 + 3 * trial
        _close(
            "kNN ages", student(query, gallery, ages, k), knn_predict(query, gallery, ages, k=k),
            hint="L1 distances to every gallery row, the k smallest, then the mean of their ages.",
        )
    _passed("your kNN age estimate")
