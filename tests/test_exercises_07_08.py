"""The exercise checks of notebooks/07_siamese_metric_learning.ipynb and 08_embeddings.ipynb:
each passes a correct solution (written here independently, with plain loops or another
decomposition) and catches a plausible mistake."""

import itertools
import math

import pytest
import torch

from agekit import exercises


def contrastive_by_loop(embeddings, ages, margin, q):
    """Jeong et al. (2018) eq. 2-4, one unordered pair at a time."""
    total, pairs = 0.0, 0
    for i, j in itertools.combinations(range(len(ages)), 2):
        d = float((embeddings[i] - embeddings[j]).abs().sum())
        if abs(float(ages[i]) - float(ages[j])) <= margin:
            total += 2.0 / q * d * d
        else:
            total += 2.0 * q * math.exp(-2.77 * d / q)
        pairs += 1
    return torch.tensor(total / pairs)


def knn_by_loop(query, gallery, gallery_ages, k):
    out = []
    for row in query:
        distances = [(float((row - g).abs().sum()), index) for index, g in enumerate(gallery)]
        nearest = sorted(distances)[:k]  # ties: the smaller gallery index first
        out.append(sum(float(gallery_ages[index]) for _, index in nearest) / k)
    return torch.tensor(out)


def pca_by_eigh(x, k):
    """PCA from the covariance matrix's eigenvectors (not the SVD the lesson uses)."""
    centred = x - x.mean(0)
    values, vectors = torch.linalg.eigh(centred.T @ centred)
    order = values.argsort(descending=True)[:k]
    return centred @ vectors[:, order]


def test_contrastive_loop_matches_a_hand_example():
    # ages 20, 22, 30, margin 3: pair (0, 1) is "same", both pairs with 30 are "different"
    embeddings = torch.tensor([[0.0, 0.0], [3.0, 4.0], [50.0, 0.0]])
    ages = torch.tensor([20, 22, 30])
    q = 100.0
    same = 2 / q * 7.0**2
    different = 2 * q * math.exp(-2.77 * 50 / q) + 2 * q * math.exp(-2.77 * 51 / q)
    assert float(contrastive_by_loop(embeddings, ages, 3, q)) == pytest.approx((same + different) / 3)


def test_revised_contrastive_loss_accepts_a_correct_solution(capsys):
    exercises.check_revised_contrastive_loss(contrastive_by_loop)
    assert capsys.readouterr().out.startswith("Correct:")


@pytest.mark.parametrize("mistake", [
    lambda e, a, m, q: contrastive_by_loop(e, a, m - 0.5, q),          # "smaller than margin": exclusive
    lambda e, a, m, q: contrastive_by_loop(e, a, m, q) * (len(a) - 1) / len(a),  # mean over all b*b entries
    lambda e, a, m, q: torch.tensor(float(torch.stack([                 # L2 distance instead of L1
        (2 / q * torch.dist(e[i], e[j]) ** 2) if abs(float(a[i] - a[j])) <= m
        else 2 * q * torch.exp(-2.77 * torch.dist(e[i], e[j]) / q)
        for i, j in itertools.combinations(range(len(a)), 2)]).mean())),
])
def test_revised_contrastive_loss_catches_mistakes(mistake):
    with pytest.raises(AssertionError):
        exercises.check_revised_contrastive_loss(mistake)


def test_knn_loop_matches_a_hand_example():
    gallery = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    ages = torch.tensor([20, 30, 40, 80])
    # query 0.9: nearest 1.0 (30), 0.0 (20), 2.0 (40)
    assert knn_by_loop(torch.tensor([[0.9]]), gallery, ages, 2).tolist() == [25.0]
    assert knn_by_loop(torch.tensor([[0.9]]), gallery, ages, 3).tolist() == [30.0]


def test_knn_predict_accepts_a_correct_solution(capsys):
    exercises.check_knn_predict(knn_by_loop)
    assert capsys.readouterr().out.startswith("Correct:")


@pytest.mark.parametrize("mistake", [
    lambda q, g, a, k: a.float()[torch.cdist(q, g, p=2).topk(k, largest=False).indices].mean(1),  # L2 distance
    lambda q, g, a, k: a.float()[torch.cdist(q, g, p=1).topk(k, largest=True).indices].mean(1),   # farthest
    lambda q, g, a, k: a.float()[torch.cdist(q, g, p=1).topk(k, largest=False).indices].median(1).values,
])
def test_knn_predict_catches_mistakes(mistake):
    with pytest.raises(AssertionError):
        exercises.check_knn_predict(mistake)


def test_pca_by_eigh_matches_a_hand_example():
    # points on the line y = 2x (through (1, 2)): all variance on one axis, along (1, 2) / sqrt(5)
    t = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    x = torch.stack([1 + t, 2 + 2 * t], 1)
    projection = pca_by_eigh(x, 2)
    first = projection[:, 0] * torch.sign(projection[-1, 0])
    assert torch.allclose(first, t * math.sqrt(5))
    assert torch.allclose(projection[:, 1], torch.zeros(5, dtype=torch.float64), atol=1e-12)


def test_pca_accepts_a_correct_solution(capsys):
    exercises.check_pca(pca_by_eigh)
    assert capsys.readouterr().out.startswith("Correct:")


def test_pca_accepts_float32_and_flipped_signs(capsys):
    exercises.check_pca(lambda x, k: -pca_by_eigh(x.float(), k))
    assert capsys.readouterr().out.startswith("Correct:")


def _svd(x):
    return torch.linalg.svd(x - x.mean(0), full_matrices=False)


@pytest.mark.parametrize("mistake", [
    lambda x, k: x @ torch.linalg.svd(x, full_matrices=False).Vh[:k].T,   # not centred
    lambda x, k: _svd(x).U[:, :k],                                        # forgot the singular values
    lambda x, k: (x - x.mean(0)) @ _svd(x).Vh[:, :k],                     # columns of Vh, not rows
    lambda x, k: (x - x.mean(0)) @ _svd(x).Vh[-k:].T,                     # the smallest components
    lambda x, k: pca_by_eigh(x, k).T,                                     # [k, n]
])
def test_pca_catches_mistakes(mistake):
    with pytest.raises(AssertionError):
        exercises.check_pca(mistake)


# ----------------------------------------------------------------------------- the lessons' plots (agekit.viz)


def test_plot_age_embedding_3d_puts_age_on_the_vertical_axis():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agekit.viz import plot_age_embedding_3d

    points = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    ages = torch.tensor([20, 40, 60])
    fig = plot_age_embedding_3d(points, ages, title="toy")
    ax = fig.axes[0]
    xs, ys, zs = ax.collections[0]._offsets3d
    assert list(xs) == [0.0, 2.0, 4.0] and list(ys) == [1.0, 3.0, 5.0] and list(zs) == [20.0, 40.0, 60.0]
    assert ax.get_zlabel() == "true age (years)" and ax.get_title() == "toy"
    flat = plt.figure().add_subplot()
    with pytest.raises(ValueError, match="3-D axes"):
        plot_age_embedding_3d(points, ages, ax=flat)
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        plot_age_embedding_3d(torch.zeros(3, 3), ages)
    plt.close("all")


def test_plot_embedding_groups_draws_one_labelled_scatter_per_group():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agekit.viz import plot_embedding_groups

    points = torch.arange(12.0).reshape(6, 2)
    genders = torch.tensor([0, 1, 1, -1, 0, 1])
    fig = plot_embedding_groups(points, genders, title="by gender")
    ax = fig.axes[0]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["male (2)", "female (3)", "other (1)"]
    offsets = [collection.get_offsets().tolist() for collection in ax.collections]
    assert offsets[0] == [[0.0, 1.0], [8.0, 9.0]]               # rows 0 and 4 are male
    assert offsets[1] == [[2.0, 3.0], [4.0, 5.0], [10.0, 11.0]]  # rows 1, 2, 5 are female
    assert offsets[2] == [[6.0, 7.0]]                           # row 3: unknown, in grey
    plt.close("all")
