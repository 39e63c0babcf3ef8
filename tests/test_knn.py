"""k-NN age estimation (Jeong et al., 2018, Section 2.5) and the emergent-gender vote (Table 2)."""

import pytest
import torch

from agekit.knn import (
    Gallery,
    chunk_rows,
    knn_gender_accuracy,
    knn_gender_predict,
    knn_neighbours,
    knn_predict,
)


def brute_neighbours(query, gallery, k):
    """Reference: for each query, all L1 distances in a Python loop, sorted by (distance, index)."""
    result = []
    for q in query.tolist():
        distances = [(sum(abs(a - b) for a, b in zip(q, row)), index) for index, row in enumerate(gallery.tolist())]
        result.append(sorted(distances)[:k])
    return result


def brute_predict(query, gallery, ages, k):
    rows = brute_neighbours(query, gallery, k)
    return torch.tensor([sum(float(ages[i]) for _, i in row) / k for row in rows], dtype=torch.float64)


def data(m=13, g=40, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(m, d, generator=gen, dtype=torch.float64)
    gallery = torch.randn(g, d, generator=gen, dtype=torch.float64)
    ages = torch.randint(1, 80, (g,), generator=gen)
    genders = torch.randint(0, 2, (g,), generator=gen)
    return query, gallery, ages, genders


@pytest.mark.parametrize("chunk_size", [1, 3, 5, None])
@pytest.mark.parametrize("k", [1, 4, 20, 40])
def test_predict_matches_brute_force(k, chunk_size):
    query, gallery, ages, _ = data()
    got = knn_predict(query, gallery, ages, k=k, chunk_size=chunk_size)
    assert got.shape == (13,) and got.dtype == torch.float32
    assert torch.allclose(got.double(), brute_predict(query, gallery, ages, k), atol=1e-5)


def test_k_equal_to_gallery_is_the_gallery_mean():
    query, gallery, ages, _ = data(g=40)
    got = knn_predict(query, gallery, ages, k=40, chunk_size=4)
    assert torch.allclose(got, torch.full((13,), ages.double().mean().item(), dtype=torch.float32))


def test_neighbours_match_brute_force_order():
    query, gallery, _, _ = data()
    indices, distances = knn_neighbours(query, gallery, k=6, chunk_size=4)
    reference = brute_neighbours(query, gallery, 6)
    assert indices.tolist() == [[i for _, i in row] for row in reference]
    assert torch.allclose(distances, torch.tensor([[d for d, _ in row] for row in reference], dtype=torch.float64))


def test_ties_go_to_the_smaller_gallery_index():
    # integer embeddings make exact ties everywhere; the reference sorts by (distance, index)
    gen = torch.Generator().manual_seed(1)
    query = torch.randint(0, 3, (9, 3), generator=gen).float()
    gallery = torch.randint(0, 3, (30, 3), generator=gen).float()
    ages = torch.arange(30) * 2
    for k in (1, 5, 7, 30):
        for chunk_size in (2, 9):
            indices, _ = knn_neighbours(query, gallery, k=k, chunk_size=chunk_size)
            assert indices.tolist() == [[i for _, i in row] for row in brute_neighbours(query, gallery, k)]
            assert torch.allclose(knn_predict(query, gallery, ages, k, chunk_size).double(),
                                  brute_predict(query, gallery, ages, k))


def test_a_tie_at_the_kth_place():
    # three gallery points at distance 1 from the query; k = 2 keeps the two with smaller indices
    query = torch.zeros(1, 2)
    gallery = torch.tensor([[5.0, 5.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    ages = torch.tensor([90, 10, 20, 30])
    indices, distances = knn_neighbours(query, gallery, k=2)
    assert indices.tolist() == [[1, 2]] and distances.tolist() == [[1.0, 1.0]]
    assert knn_predict(query, gallery, ages, k=2).item() == 15.0


def test_bad_arguments():
    query, gallery, ages, _ = data(g=10)
    with pytest.raises(ValueError, match="only 10 rows"):
        knn_predict(query, gallery, ages, k=11)
    with pytest.raises(ValueError, match="dimensions"):
        knn_predict(query[:, :3], gallery, ages)
    with pytest.raises(ValueError, match="gallery_ages"):
        knn_predict(query, gallery, ages[:9], k=3)
    with pytest.raises(ValueError, match="k must be at least 1"):
        knn_predict(query, gallery, ages, k=0)
    with pytest.raises(ValueError, match="chunk_size"):
        knn_predict(query, gallery, ages, k=3, chunk_size=0)
    with pytest.raises(ValueError, match="2-D"):
        knn_predict(query[0], gallery, ages, k=3)
    with pytest.raises(ValueError, match="NaN"):
        knn_predict(torch.full((2, 5), float("nan")), gallery, ages, k=3)


def test_huge_but_finite_values_are_accepted():
    # their sum overflows to infinity, yet every value is finite: no false alarm
    gallery = torch.tensor([[3e38, 0.0], [3e38, 1.0], [-1.0, 0.0]])
    indices, _ = knn_neighbours(torch.tensor([[3e38, 0.0]]), gallery, k=2)
    assert indices.tolist() == [[0, 1]]
    with pytest.raises(ValueError, match="gallery contains NaN"):
        knn_neighbours(torch.zeros(1, 2), torch.tensor([[0.0, float("inf")], [1.0, 1.0]]), k=1)


def test_chunk_rows_respects_the_budget():
    g = 50_000
    rows = chunk_rows(g, memory_mb=64)
    assert rows * g * 16 <= 64 * 2**20 < (rows + 1) * g * 16
    rows64 = chunk_rows(g, memory_mb=64, element_size=8)  # float64: 8 + 8 + 8 bytes per entry
    assert rows64 * g * 24 <= 64 * 2**20 < (rows64 + 1) * g * 24
    assert chunk_rows(10**9, memory_mb=1) == 1
    with pytest.raises(ValueError, match="memory_mb"):
        chunk_rows(g, memory_mb=0)


def loop_gender_vote(query, gallery, genders, k):
    votes = []
    for row in brute_neighbours(query, gallery, k):
        female = sum(int(genders[i]) for _, i in row)
        male = k - female
        votes.append(1 if female > male else 0 if male > female else int(genders[row[0][1]]))
    return torch.tensor(votes)


@pytest.mark.parametrize("k", [1, 4, 5, 20])
def test_gender_vote_matches_loop(k):
    query, gallery, _, genders = data(m=17, seed=2)
    predicted = knn_gender_predict(query, gallery, genders, k=k, chunk_size=5)
    assert predicted.tolist() == loop_gender_vote(query, gallery, genders, k).tolist()
    truth = torch.randint(0, 2, (17,), generator=torch.Generator().manual_seed(k))
    truth[3] = -1  # unknown: left out
    known = truth >= 0
    expected = 100.0 * (predicted[known] == truth[known]).double().mean().item()
    assert knn_gender_accuracy(query, truth, gallery, genders, k=k) == pytest.approx(expected)


def test_gender_accuracy_on_separated_genders():
    # genders live in separate halves of the embedding space: the vote is always right
    gen = torch.Generator().manual_seed(4)
    gallery = torch.randn(60, 3, generator=gen)
    genders = torch.arange(60) % 2
    gallery[:, 0] += 10.0 * genders
    query = torch.randn(20, 3, generator=gen)
    truth = torch.arange(20) % 2
    query[:, 0] += 10.0 * truth
    assert knn_gender_accuracy(query, truth, gallery, genders, k=5) == 100.0
    assert knn_gender_accuracy(query, 1 - truth, gallery, genders, k=5) == 0.0
    with pytest.raises(ValueError, match="no known gender"):
        knn_gender_accuracy(query, torch.full((20,), -1), gallery, genders, k=5)
    with pytest.raises(ValueError, match="gallery_genders"):
        knn_gender_accuracy(query, truth, gallery, torch.full((60,), 2), k=5)


def test_gallery_round_trip(tmp_path):
    query, gallery, ages, genders = data()
    genders[0] = -1
    bank = Gallery(gallery, ages, genders)
    assert len(bank) == 40 and bank.dim == 5
    path = tmp_path / "gallery.pt"
    torch.save(bank.state_dict(), path)
    loaded = Gallery.from_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(loaded.embeddings, bank.embeddings)
    assert torch.equal(loaded.ages, ages) and torch.equal(loaded.genders, genders)
    assert torch.equal(loaded.predict(query, k=7), knn_predict(query, gallery, ages, k=7))
    indices, distances = loaded.neighbours(query, k=3)
    assert indices.tolist() == [[i for _, i in row] for row in brute_neighbours(query, gallery, 3)]
    # entries of unknown gender stay out of the vote
    keep = genders >= 0
    truth = torch.randint(0, 2, (13,), generator=torch.Generator().manual_seed(9))
    assert loaded.gender_accuracy(query, truth, k=5) == pytest.approx(
        knn_gender_accuracy(query, truth, gallery[keep], genders[keep], k=5))


def test_gallery_without_genders_and_bad_states():
    query, gallery, ages, _ = data()
    bank = Gallery(gallery, ages)
    assert set(bank.state_dict()) == {"embeddings", "ages"}
    with pytest.raises(ValueError, match="without genders"):
        bank.gender_accuracy(query, torch.zeros(13, dtype=torch.int64))
    with pytest.raises(ValueError, match="'embeddings' and 'ages'"):
        bank.load_state_dict({"embeddings": gallery})
    with pytest.raises(ValueError, match="Unexpected keys"):
        bank.load_state_dict({"embeddings": gallery, "ages": ages, "names": ages})
    with pytest.raises(ValueError, match="ages"):
        Gallery(gallery, ages[:5])


def test_knn_works_without_the_benchmark_only_packages():
    """faiss-cpu is optional (it only speeds large CPU searches) and threadpoolctl a benchmark baseline."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['faiss'] = None; sys.modules['threadpoolctl'] = None\n"
            "import torch; from agekit.knn import knn_predict, Gallery\n"
            "g = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]); a = torch.tensor([10.0, 20.0, 60.0])\n"
            "print(knn_predict(torch.tensor([[0.9, 0.8]]), g, a, k=2).item())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip()) == 15.0


class NoisyFaiss:
    """A stand-in for faiss whose L1 distances carry float32-sized rounding noise.

    Its candidates are the exact top ``width`` by the noisy distances, as faiss's are
    by its own rounding: near the k-th place they can come in another order than
    torch's, which is what the re-ranking must undo.
    """

    METRIC_L1 = 1

    def __init__(self, scale=1e-6):
        self.scale, self.searched = scale, 0
        outer = self

        class IndexFlat:
            def __init__(self, d, metric):
                assert metric == outer.METRIC_L1

            def add(self, gallery):
                self.gallery = torch.from_numpy(gallery)

            def search(self, query, width):
                outer.searched += 1
                exact = torch.cdist(torch.from_numpy(query).double(), self.gallery.double(), p=1)
                noise = torch.empty_like(exact).uniform_(-1, 1, generator=torch.Generator().manual_seed(0))
                noisy = (exact * (1 + outer.scale * noise)).float()
                values, index = noisy.topk(width, dim=1, largest=False, sorted=True)
                return values.numpy(), index.numpy()

        self.IndexFlat = IndexFlat

    def omp_set_num_threads(self, n):
        assert n == torch.get_num_threads()


def plain(query, gallery, k, monkeypatch):
    monkeypatch.setenv("AGEKIT_KNN", "torch")
    answer = knn_neighbours(query, gallery, k)
    monkeypatch.delenv("AGEKIT_KNN")
    return answer


@pytest.mark.parametrize("kind", ["continuous", "near ties", "exact ties"])
def test_the_fast_search_gives_the_plain_answer_bit_for_bit(kind, monkeypatch):
    import agekit.knn as knn

    monkeypatch.setattr(knn, "FAISS_MIN_WORK", 0)  # small searches take the fast path too
    gen = torch.Generator().manual_seed(3)
    if kind == "continuous":
        query, gallery = torch.randn(200, 16, generator=gen), torch.randn(6_000, 16, generator=gen)
    elif kind == "near ties":  # distances a few ulps apart: the noise reorders them
        base = torch.randint(0, 4, (6_000, 16), generator=gen).float()
        gallery = base + 1e-6 * torch.rand(6_000, 16, generator=gen)
        query = torch.randint(0, 4, (200, 16), generator=gen).float()
    else:  # integer embeddings: many gallery rows tie at the k-th place
        gallery = torch.randint(0, 3, (6_000, 6), generator=gen).float()
        query = torch.randint(0, 3, (200, 6), generator=gen).float()
    expected = plain(query, gallery, 20, monkeypatch)
    fake = NoisyFaiss()
    monkeypatch.setattr(knn, "_faiss", lambda: fake)
    got = knn_neighbours(query, gallery, 20)
    assert fake.searched == 1  # the fast path ran
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    brute = brute_neighbours(query[:3].double(), gallery.double(), 20) if kind == "exact ties" else None
    if brute is not None:  # and the plain path is the tie rule itself
        assert [[i for _, i in row] for row in brute] == got[0][:3].tolist()


def test_small_searches_and_float64_keep_the_plain_path(monkeypatch):
    import agekit.knn as knn

    fake = NoisyFaiss()
    monkeypatch.setattr(knn, "_faiss", lambda: fake)
    knn_neighbours(torch.randn(10, 4), torch.randn(1000, 4), 5)  # 10,000 pairs: below FAISS_MIN_WORK
    monkeypatch.setattr(knn, "FAISS_MIN_WORK", 0)  # float64 keeps the plain path at any size
    knn_neighbours(torch.randn(20, 4, dtype=torch.float64), torch.randn(600, 4, dtype=torch.float64), 5)
    assert fake.searched == 0


def test_real_faiss_gives_the_plain_answer(monkeypatch):
    """With faiss-cpu installed (the test extra installs it), its search feeds the same answer."""
    faiss = pytest.importorskip("faiss")
    import agekit.knn as knn

    assert knn._faiss() is faiss
    gen = torch.Generator().manual_seed(5)
    monkeypatch.setattr(knn, "FAISS_MIN_WORK", 0)
    query, gallery = torch.randn(300, 70, generator=gen), torch.randn(5_000, 70, generator=gen)
    expected = plain(query, gallery, 20, monkeypatch)
    got = knn_neighbours(query, gallery, 20)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_the_fast_search_works_in_bounded_chunks_and_on_tensors_that_need_grad(monkeypatch):
    import agekit.knn as knn

    monkeypatch.setattr(knn, "FAISS_MIN_WORK", 0)
    gen = torch.Generator().manual_seed(4)
    query, gallery = torch.randn(300, 16, generator=gen), torch.randn(4_000, 16, generator=gen)
    expected = plain(query, gallery, 20, monkeypatch)
    fake = NoisyFaiss()
    monkeypatch.setattr(knn, "_faiss", lambda: fake)
    # 0.05 MiB holds the gathered candidates (22 rows of 16 float32, twice) of 18 queries at a time
    got = knn_neighbours(query.requires_grad_(), gallery, 20, memory_mb=0.05)
    assert fake.searched == 17  # one faiss call per chunk of at most 18 of the 300 queries
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
