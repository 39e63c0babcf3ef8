"""Automatic checks for the notebooks' exercises.

Each ``check_*`` function calls the student's implementation on random inputs,
compares it with the package's own, prints a short success line, and otherwise
raises an ``AssertionError`` that says what differed and gives a hint. The
package's version is the reference because the tests already compare it with
slow loops and worked examples.

Used by every notebook's *Exercises* section.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch


def _exercise(check: Callable) -> Callable:
    """Wrap a check so that a student function returning None gets a friendly message, not a TypeError."""

    @functools.wraps(check)
    def checked(student: Callable, *args, **kwargs):
        if not callable(student):
            raise AssertionError(f"{check.__name__} expects your function itself, got {student!r}. "
                                 "Pass the name without calling it, e.g. check(my_function).")
        name = getattr(student, "__name__", "your function")

        def guarded(*a, **k):
            result = student(*a, **k)
            if result is None:
                raise AssertionError(f"{name}() returned None: it must end with a `return` of its result. "
                                     "Check that every path through it returns a value.")
            return result

        return check(guarded, *args, **kwargs)

    return checked


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


@_exercise
def check_mae(student: Callable, trials: int = 5) -> None:
    """Exercise (02): ``student(pred, true) -> float``, the mean absolute error (eq. 9)."""
    from agekit.metrics import mae

    for trial in range(trials):
        g = _generator(trial)
        pred, true = torch.rand(50, generator=g) * 80, torch.randint(0, 80, (50,), generator=g)
        _close("MAE", float(student(pred, true)), mae(pred, true), hint="Average |pred - true| over all samples.")
    _passed("your MAE")


@_exercise
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


@_exercise
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


@_exercise
def check_age_weights(student: Callable, trials: int = 5) -> None:
    """Exercise (05): ``student(references [n, c], p [n]) -> W [c, n]`` (eqs. 4-5)."""
    for trial in range(trials):
        g = _generator(trial)
        n, c = 6 + trial, 4 + 2 * trial
        references, p = torch.randn(n, c, generator=g), torch.randn(n, generator=g)
        expected = torch.sigmoid(references.T * p)  # eq. 4 then eq. 5, written once here as the key
        _close("W", student(references, p), expected, hint="Permute R to [c, n], scale column j by p_j, then sigmoid.")
    _passed("your age weights W")


@_exercise
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


@_exercise
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
        if trial % 2:  # errors on a half-year grid: faces of one age tie, and the first of them must win
            pred = true.float() + torch.round(torch.randn(len(true), generator=g) * 2) / 2
        features = torch.randn(len(true), 6, generator=g)
        _close(
            "R", student(features, pred, true, values), select_references(features, pred, true, values),
            hint="For each label, among samples with that true age, take the features of the smallest |true - pred|; "
                 "on a tie, the first such face (lowest index) wins.",
        )
    _passed("your reference selection (Algorithm 1)")


@_exercise
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


@_exercise
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


@_exercise
def check_share_in_range(student: Callable, trials: int = 5) -> None:
    """Exercise (00): ``student(ages [N], low, high) -> percent`` of ages with low <= age <= high."""
    for trial in range(trials):
        g = _generator(trial)
        ages = torch.randint(0, 91, (200,), generator=g)
        low = int(torch.randint(0, 60, (1,), generator=g))
        high = low + int(torch.randint(1, 30, (1,), generator=g))
        ages[:4], ages[4:8] = low, high  # on the edges of the range: these count
        expected = ((ages >= low) & (ages <= high)).to(torch.float64).mean() * 100.0  # the key, written once here
        _close(
            "share", float(student(ages, low, high)), float(expected),
            hint="Count ages with low <= age <= high (both ends included), divide by the number of ages, times 100.",
        )
    _passed("your share of ages in a range")


@_exercise
def check_to_positions(student: Callable, trials: int = 5) -> None:
    """Exercise (01): ``student(ages [m], label_values [n]) -> positions int64 [m]`` (RAPL Fig. 2)."""
    from agekit.data import AgeLabels

    for trial in range(trials):
        g = _generator(trial)
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
    _passed("your ages -> positions")


@_exercise
def check_leaked_identities(student: Callable, trials: int = 5) -> None:
    """Exercise (01): ``student(identities [N], split_codes [N]) -> int``, people found in more than one split."""
    from agekit.data import find_leakage

    for trial in range(trials):
        g = _generator(trial)
        n_people = 20 + 10 * trial
        identities = torch.randint(0, n_people, (5 * n_people,), generator=g)
        codes = torch.randint(0, 3, (n_people,), generator=g)[identities]  # a clean split by person ...
        moved = torch.rand(len(identities), generator=g) < 0.1
        codes[moved] = torch.randint(0, 3, (int(moved.sum()),), generator=g)  # ... with some photos moved
        _close(
            "leaked identities", float(student(identities, codes)), float(len(find_leakage(identities, codes))),
            hint="Count people (not photos) whose photos fall in two or three splits; "
                 "a person in val and test leaks too.",
        )
    _passed("your leakage count")


@_exercise
def check_conv_output_size(student: Callable) -> None:
    """Exercise (03): ``student(size, kernel, stride, padding) -> int``, the side of a square convolution's output.

    Compared with the shape torch's own ``conv2d`` returns, over cases that need the rounding down.
    """
    import torch.nn.functional as F

    cases = [(112, 3, 1, 1), (112, 3, 2, 1), (56, 1, 2, 0), (7, 3, 2, 1), (31, 3, 2, 1), (32, 5, 1, 2),
             (15, 5, 3, 0), (14, 3, 2, 0), (9, 1, 1, 0), (28, 7, 2, 3)]
    for size, kernel, stride, padding in cases:
        expected = F.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, kernel, kernel),
                            stride=stride, padding=padding).shape[-1]
        got = student(size, kernel, stride, padding)
        got = got.item() if isinstance(got, torch.Tensor) else got
        if isinstance(got, bool) or not isinstance(got, (int, float)) or got != expected:
            raise AssertionError(
                f"size={size}, kernel={kernel}, stride={stride}, padding={padding}: expected {expected}, got {got!r}. "
                "Pad both sides (2 * padding), count the kernel positions that fit, and round down: "
                "(size + 2 * padding - kernel) // stride + 1."
            )
    print(f"Correct: your output sizes match torch's conv2d in all {len(cases)} cases.")


@_exercise
def check_bottleneck_parameters(student: Callable) -> None:
    """Exercise (03): ``student(in_channels, depth) -> int``, the learnable parameters of one bottleneck_IR unit.

    Compared with ``agekit.models.ir.BottleneckIR(in_channels, depth, stride=2)``.
    """
    from agekit.models.ir import BottleneckIR

    for in_channels, depth in [(64, 64), (64, 128), (128, 256), (256, 256), (3, 8), (16, 32), (32, 32)]:
        unit = BottleneckIR(in_channels, depth, stride=2)
        expected = sum(parameter.numel() for parameter in unit.parameters())
        got = student(in_channels, depth)
        got = got.item() if isinstance(got, torch.Tensor) else got
        if got != expected:
            raise AssertionError(
                f"in_channels={in_channels}, depth={depth}: expected {expected:,} parameters, got {got!r}. "
                "Count BatchNorm as 2 per channel (weight and bias; running statistics are not learnt), "
                "PReLU as 1 per channel, the 3x3 convolutions without bias, and a 1x1 convolution plus "
                "BatchNorm on the shortcut only when the width changes."
            )
    print("Correct: your parameter count matches agekit's BottleneckIR for every width.")


@_exercise
def check_confidence_score(student: Callable, trials: int = 5) -> None:
    """Exercise (06): ``student(est_ages [N], position_ages [N], tolerance) -> percent`` (RAPL eq. 12)."""
    from agekit.metrics import confidence_score

    for trial in range(trials):
        g = _generator(trial)
        n, tolerance = 10 + 17 * trial, [1, 2, 3, 5, 10][trial % 5]
        position_ages = torch.randint(1, 91, (n,), generator=g)
        est_ages = position_ages.float() + torch.randn(n, generator=g) * 2 * tolerance
        est_ages[:3] = position_ages[:3].float() + tolerance  # exactly on the tolerance, above: these count
        est_ages[3:6] = position_ages[3:6].float() - tolerance  # ... and below
        _close(
            "confidence score", float(student(est_ages, position_ages, tolerance)),
            confidence_score(est_ages, position_ages, tolerance),
            hint="Count the faces whose two estimates differ by at most t years in either direction "
                 "(|a - a_p| <= t), divide by the number of faces (not always 10), times 100.",
        )
    _passed("your confidence score")


@_exercise
def check_joint_loss(student: Callable, trials: int = 5) -> None:
    """Exercise (06): ``student(age, gender, position, lam, mu) -> scalar`` (RAPL eq. 8).

    ``gender`` or ``position`` may be None (no gender head; the position branch in epoch 1):
    such a term contributes nothing.
    """
    from agekit.losses import joint_loss

    for trial in range(trials):
        g = _generator(trial)
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
    _passed("your joint loss")


@_exercise
def check_pca(student: Callable, trials: int = 4) -> None:
    """Exercise (08): ``student(x [n, d], n_components) -> projection [n, n_components]`` (PCA).

    Compared with scikit-learn's ``PCA(n_components).fit_transform(x)``. The sign of a
    principal direction is arbitrary, so each column may come out flipped.
    """
    from sklearn.decomposition import PCA

    for trial in range(trials):
        g = _generator(trial)
        n, d, k = 40 + 10 * trial, 5 + trial, 2 + trial % 2
        rotation = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q
        spread = torch.linspace(4.0, 0.5, d, dtype=torch.float64)  # distinct variances: one answer up to sign
        offset = 5.0 + torch.randn(d, generator=g, dtype=torch.float64)  # far from the origin
        x = (torch.randn(n, d, generator=g, dtype=torch.float64) * spread) @ rotation.T + offset
        expected = torch.as_tensor(PCA(n_components=k, svd_solver="full").fit_transform(x.numpy()))
        got = torch.as_tensor(student(x.clone(), k)).detach().cpu().double()
        if got.shape != expected.shape:
            raise AssertionError(
                f"projection: expected shape {tuple(expected.shape)} (one row per point, one column per "
                f"component), got {tuple(got.shape)}. Multiply the centred data by the first "
                f"{k} right singular vectors: x_c @ Vh[:{k}].T."
            )
        signs = torch.where((got * expected).sum(0) < 0, -1.0, 1.0).to(torch.float64)
        _close(
            "projection", got * signs, expected, atol=1e-4,
            hint="Centre each column first (subtract the mean), take torch.linalg.svd(x_c, full_matrices=False), "
                 "and project onto the rows of Vh with the largest singular values: "
                 "x_c @ Vh[:k].T (= U[:, :k] * S[:k]).",
        )
    print("Correct: your PCA matches scikit-learn's projection (up to the sign of each component).")


def _seed_scores(g: torch.Generator, n: int) -> tuple[list[float], list[float]]:
    """Two methods' test MAEs over ``n`` seeds that share a large per-seed effect (data split, init)."""
    shared = torch.randn(n, generator=g, dtype=torch.float64) * 0.8  # what one seed does to every method
    a = 6.0 + shared + torch.randn(n, generator=g, dtype=torch.float64) * 0.1
    b = 5.7 + shared + torch.randn(n, generator=g, dtype=torch.float64) * 0.1
    return a.tolist(), b.tolist()


def _pair_of_floats(name: str, got) -> tuple[float, float]:
    try:
        first, second = (float(v) for v in got)
    except (TypeError, ValueError):
        raise AssertionError(f"{name}: return two numbers (mean, std) as a tuple, got {got!r}.") from None
    return first, second


@_exercise
def check_mean_std(student: Callable, trials: int = 5) -> None:
    """Exercise (09): ``student(values) -> (mean, std)`` of one method's scores over seeds (a list of floats).

    std is the sample standard deviation (divide by n - 1), compared with Python's
    ``statistics.mean`` and ``statistics.stdev``.
    """
    import statistics

    for trial in range(trials):
        values, _ = _seed_scores(_generator(trial), 2 + trial)
        mean, std = _pair_of_floats("mean_std", student(list(values)))
        _close("mean", mean, statistics.mean(values), hint="The mean is the sum divided by the number of seeds.")
        _close(
            "std", std, statistics.stdev(values),
            hint="Use the sample standard deviation: divide the squared deviations by n - 1, not n "
                 "(numpy's np.std needs ddof=1; torch's Tensor.std already divides by n - 1).",
        )
    print("Correct: your mean and sample standard deviation match Python's statistics module.")


@_exercise
def check_paired_difference(student: Callable, trials: int = 5) -> None:
    """Exercise (09): ``student(a, b) -> (mean, std)`` of the per-seed differences ``a[i] - b[i]``.

    a and b are two methods' scores over the same seeds (lists of floats); compared with
    ``statistics.mean`` and ``statistics.stdev`` of the differences.
    """
    import statistics

    for trial in range(trials):
        a, b = _seed_scores(_generator(100 + trial), 3 + trial)
        differences = [x - y for x, y in zip(a, b)]
        mean, std = _pair_of_floats("paired_difference", student(list(a), list(b)))
        _close("mean difference", mean, statistics.mean(differences),
               hint="Subtract per seed, a[i] - b[i] (in that order), then average.")
        _close(
            "std of the differences", std, statistics.stdev(differences),
            hint="Pair the seeds: take the sample std (n - 1) of the per-seed differences a[i] - b[i], not a "
                 "combination of the two methods' own stds; the shared seed effect cancels in the differences.",
        )
    print("Correct: your paired differences match Python's statistics module.")


_AGEDB_CASES = [  # (image id, name, age, gender letter) in AgeDB's layout {image_id}_{Name}_{age}_{m|f}.jpg
    (0, "MariaCallas", 35, "f"), (17, "AlbertEinstein", 72, "m"), (2048, "José Martí", 40, "m"),
    (311, "Anne_Marie Duval", 28, "f"), (9, "Zoë Saldaña", 3, "f"), (45, "Søren_Kierkegaard_Jr", 101, "m"),
    (6006, "50Cent", 38, "m"), (12, "Nguyễn Thị Minh Khai", 29, "f"), (77, "Louis_XIV", 1, "m"),
    (1, "O'Brien-Smith", 55, "f"), (16487, "Björk Guðmundsdóttir", 47, "f"), (300, "A", 60, "m"),
]
_AGEDB_MALFORMED = [  # names the format does not fit: no image id, no gender, a word for the age, no name, ...
    "MariaCallas_35_f.jpg", "7_Bob_35_x.jpg", "8_Bob_old_m.jpg", "9__35_m.jpg", "10_Bob_35.jpg",
    "Portrait of Bob.jpg", "11_Bob_35_male.jpg",
]


def check_parse_agedb(student: Callable) -> None:
    """Exercise (10): ``student(file_name) -> (image_id, name, age, gender)``, or None when the name does not fit.

    file_name: an AgeDB file name ``{image_id}_{Name}_{age}_{m|f}.jpg``; gender 0 male,
    1 female (the paper's order). Compared with ``agekit.data.formats.parse_agedb``,
    which is run on empty files of these names, and with the image ids they were made from.
    """
    import tempfile
    from pathlib import Path

    from agekit.data.formats import parse_agedb

    names = [f"{i}_{name}_{age}_{g}.jpg" for i, name, age, g in _AGEDB_CASES] + _AGEDB_MALFORMED
    ids = [case[0] for case in _AGEDB_CASES] + [None] * len(_AGEDB_MALFORMED)
    with tempfile.TemporaryDirectory() as root:
        for k, name in enumerate(names):  # one folder per file: found by its folder whatever the OS does to names
            (Path(root) / f"{k:03d}").mkdir()
            (Path(root) / f"{k:03d}" / name).touch()
        parsed = {int(r.path.split("/")[0]): r for r in parse_agedb(Path(root)).records}
    for k, (name, image_id) in enumerate(zip(names, ids)):
        got = student(name)
        if k not in parsed:
            if got is not None:
                raise AssertionError(f"{name!r} does not fit the layout (agekit skips it), but you returned {got!r}; "
                                     "return None for it.")
            continue
        r = parsed[k]
        expected = (image_id, r.identity, r.age, r.gender)
        if got is None:
            raise AssertionError(f"{name!r}: expected {expected}, got None. Names may hold spaces, underscores, "
                                 "digits and accents.")
        try:
            got = (int(got[0]), got[1], int(got[2]), int(got[3]))
        except (TypeError, ValueError, IndexError):
            raise AssertionError(f"{name!r}: return (image_id, name, age, gender), got {got!r}.") from None
        if got != expected:
            raise AssertionError(
                f"{name!r}: expected {expected}, got {got}. Remove the extension, take the image id from the left "
                "and the age and the gender letter from the right; the name is everything in between, "
                "underscores included. Gender: m -> 0, f -> 1."
            )
    print(f"Correct: your parser agrees with agekit on all {len(names)} file names.")
