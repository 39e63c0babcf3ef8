"""k-nearest-neighbour age estimation over an embedding gallery (Jeong et al., 2018, Section 2.5).

After metric learning, the age of a test face is read off the training set: embed
the face, find the M training embeddings closest to it under the L1 distance (the
same distance the loss used), and average their ages. The paper takes M = 20.

The same neighbours also carry gender: a majority vote among them recovers the
gender of most faces even when the network only ever saw ages (the paper's Table 2,
about 81 % on MORPH), evidence that age comparison leans on gender cues.

Everything here runs on the device the tensors are on, in chunks of queries so
that memory stays bounded however large the query set is.

Tie rule (deterministic): gallery entries at exactly the same distance from a
query are ordered by their gallery index, the smaller index counting as nearer.
This decides both which entries fill the last places of the k nearest and the
order in which neighbours are returned.

Speed: on the CPU, when the optional faiss-cpu package is installed, faiss's exact
L1 search proposes a few more than k candidates per query; their distances are then
recomputed with ``torch.cdist`` (bit for bit the values of the plain path) and the
tie rule applied. A query whose k-th distance comes within rounding of the last
candidate's (a tie at the boundary, or a neighbour faiss's rounding could have hidden)
is searched again by the plain path, so the answer never depends on whether faiss is
installed. ``AGEKIT_KNN=torch`` turns faiss off.

Taught in ``notebooks/07_siamese_metric_learning.ipynb`` and
``notebooks/08_embeddings.ipynb``.
"""

from __future__ import annotations

import os

import torch

from agekit import _checks

DEFAULT_MEMORY_MB = 64.0
"""Working-memory budget (MiB) from which the query chunk size is chosen when none is given."""



def _embeddings(name: str, value) -> torch.Tensor:
    tensor = _checks.matrix(name, value)
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()  # integers and half precision: distances in float32
    # a NaN or infinity anywhere makes the sum non-finite; the sum needs no [n, d] temporary,
    # and only a sum that overflowed on finite values falls through to the exact check
    if tensor.numel() and not bool(torch.isfinite(tensor.sum())) and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values; check the model that produced them.")
    return tensor


def _pair(query, gallery) -> tuple[torch.Tensor, torch.Tensor]:
    query = _embeddings("query", query)
    gallery = _embeddings("gallery", gallery)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query has {query.shape[1]} dimensions per row but gallery has {gallery.shape[1]}; "
            f"embed both with the same model (e.g. both age embeddings)."
        )
    if query.device != gallery.device:
        raise ValueError(
            f"query is on {query.device} but gallery is on {gallery.device}; move one, "
            f"e.g. query.to(gallery.device)."
        )
    if gallery.shape[0] == 0:
        raise ValueError("gallery is empty; build it from the training embeddings.")
    dtype = torch.promote_types(query.dtype, gallery.dtype)
    return query.to(dtype), gallery.to(dtype)


def chunk_rows(gallery_size: int, memory_mb: float = DEFAULT_MEMORY_MB, element_size: int = 4) -> int:
    """Queries per chunk so that the working memory stays under ``memory_mb`` MiB.

    Bound: chunk * gallery_size * (2 * element_size + 8) bytes, i.e. 16 bytes per
    (query, gallery) entry in float32: the distance block (4) plus, in the worst
    case where every row ties at the k-th place, a stable sort of the block (4 for
    the values, 8 for the int64 indices). Without ties the block alone is used.
    """
    if not memory_mb > 0:
        raise ValueError(f"memory_mb must be positive, got {memory_mb}.")
    per_row = max(1, gallery_size) * (2 * element_size + 8)
    return max(1, int(memory_mb * 2**20) // per_row)


def knn_neighbours(query, gallery, k: int = 20, chunk_size: int | None = None,
                   memory_mb: float = DEFAULT_MEMORY_MB) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest gallery rows of each query under the L1 distance (eq. 1 of the paper).

    query: [m, d], gallery: [g, d] -> (indices int64 [m, k], distances [m, k]),
    nearest first; equal distances are ordered by gallery index (smaller first).

    Queries are processed ``chunk_size`` at a time (default: from ``memory_mb``,
    see :func:`chunk_rows`); peak extra memory is about chunk_size * g * 4 bytes
    for the float32 distance block (one block alive at a time), chunk_size * g * 16
    bytes at worst when many rows tie at the k-th place, plus m * k * 12 bytes for
    the answer (float64: 8 and 24 bytes per entry).

    Taught in ``notebooks/07_siamese_metric_learning.ipynb``.
    """
    query, gallery = _pair(query, gallery)
    return _search(query, gallery, k, chunk_size, memory_mb)


CANDIDATES_EXTRA = 2
"""Candidates beyond k that the faiss search proposes per query."""

FAISS_MIN_WORK = 10_000_000
"""Query x gallery pairs below which the plain path is used (faiss's start-up costs more)."""


def _faiss():
    """The faiss module, or None when it is not installed or ``AGEKIT_KNN=torch``."""
    if os.environ.get("AGEKIT_KNN", "auto") == "torch":
        return None
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _faiss_candidates(faiss, index, query: torch.Tensor, width: int):
    """faiss's exact L1 search of ``index``: (indices int64 [m, width], its float32 distances [m, width])."""
    faiss.omp_set_num_threads(torch.get_num_threads())  # the same threads as torch's kernels
    distances, indices = index.search(query.detach().contiguous().numpy(), width)
    return torch.from_numpy(indices), torch.from_numpy(distances)


def _exact_from_candidates(query, gallery, k: int, candidates, proposed):
    """Rows whose k nearest lie surely among their candidates: (rows, indices [r, k], distances [r, k]).

    The candidates' distances are recomputed by ``torch.cdist`` (the plain path's values
    exactly); a row is sure when its k-th recomputed distance is below the distance of
    its last candidate by more than float32 rounding could move either, so no other
    gallery row can be nearer or tied.
    """
    exact = torch.cdist(query[:, None, :], gallery[candidates], p=1).squeeze(1)  # [m, width]
    order = torch.sort(candidates, dim=1).indices  # index order, then a stable sort by distance
    candidates, exact = candidates.gather(1, order), exact.gather(1, order)
    by_distance = torch.sort(exact, dim=1, stable=True).indices[:, :k]
    chosen, values = candidates.gather(1, by_distance), exact.gather(1, by_distance)
    last = proposed[:, -1].to(exact.dtype)
    margin = 1e-4 * (1.0 + last.abs()) + 1e-4 * values[:, -1].abs()
    sure = (values[:, -1] < last - margin).nonzero().squeeze(1)
    return sure, chosen[sure], values[sure]


@torch.no_grad()
def _search(query: torch.Tensor, gallery: torch.Tensor, k, chunk_size, memory_mb):
    """:func:`knn_neighbours` on already checked embeddings."""
    m, g = query.shape[0], gallery.shape[0]
    k = _checks.positive_int("k", k)
    if k > g:
        raise ValueError(f"k = {k} neighbours were asked for, but the gallery holds only {g} rows; use k <= {g}.")
    if chunk_size is None:
        chunk = chunk_rows(g, memory_mb, query.element_size())
    else:
        chunk = _checks.positive_int("chunk_size", chunk_size)
    faiss = _faiss() if query.device.type == "cpu" and query.dtype == torch.float32 else None
    width = k + CANDIDATES_EXTRA
    if faiss is not None and width < g and m * g >= FAISS_MIN_WORK:
        index = faiss.IndexFlat(gallery.shape[1], faiss.METRIC_L1)
        index.add(gallery.detach().contiguous().numpy())
        indices = torch.empty(m, k, dtype=torch.int64)
        distances = torch.empty(m, k, dtype=query.dtype)
        # queries per faiss call: the re-ranking holds [step, width, d] gathered gallery rows
        step = max(1, int(memory_mb * 2**20) // (width * gallery.shape[1] * gallery.element_size() * 2))
        for start in range(0, m, step):
            part = query[start:start + step]
            candidates, proposed = _faiss_candidates(faiss, index, part, width)
            rows, chosen, values = _exact_from_candidates(part, gallery, k, candidates, proposed)
            rest = torch.ones(len(part), dtype=torch.bool)
            rest[rows] = False
            rest = rest.nonzero().squeeze(1)
            rows, rest = rows + start, rest + start
            indices[rows], distances[rows] = chosen, values
            if rest.numel():
                indices[rest], distances[rest] = _plain_search(query[rest], gallery, k, chunk)
        return indices, distances
    return _plain_search(query, gallery, k, chunk)


def _plain_search(query: torch.Tensor, gallery: torch.Tensor, k: int, chunk: int):
    """The k nearest by ``torch.cdist`` over chunks of ``chunk`` queries (the reference path)."""
    m, g = query.shape[0], gallery.shape[0]
    extra = 1 if k < g else 0  # one more than k reveals a tie at the k-th place
    indices = torch.empty(m, k, dtype=torch.int64, device=query.device)
    distances = torch.empty(m, k, dtype=query.dtype, device=query.device)
    for start in range(0, m, chunk):
        block = torch.cdist(query[start:start + chunk], gallery, p=1)  # [c, g]
        values, index = block.topk(k + extra, dim=1, largest=False, sorted=True)
        if extra:
            # rows whose k-th and (k+1)-th smallest distances are equal: the choice of
            # which tied entries fill the last places is made by a stable sort (index order)
            tied = (values[:, k - 1] == values[:, k]).nonzero().squeeze(1)
            if tied.numel():
                sorted_values, sorted_index = torch.sort(block[tied], dim=1, stable=True)
                values[tied] = sorted_values[:, :k + extra]
                index[tied] = sorted_index[:, :k + extra]
                del sorted_values, sorted_index
            values, index = values[:, :k], index[:, :k]
        del block  # free it before the next chunk's block is made: one block alive at a time
        # canonical order inside the k: by distance, equal distances by gallery index
        by_index = index.argsort(dim=1)
        values, index = values.gather(1, by_index), index.gather(1, by_index)
        by_distance = torch.sort(values, dim=1, stable=True).indices
        distances[start:start + chunk] = values.gather(1, by_distance)
        indices[start:start + chunk] = index.gather(1, by_distance)
    return indices, distances


def _gallery_labels(name: str, value, gallery: torch.Tensor) -> torch.Tensor:
    labels = _checks.vector(name, value)
    if labels.numel() != gallery.shape[0]:
        raise ValueError(f"{name} has {labels.numel()} entries but the gallery has {gallery.shape[0]} rows; "
                         f"give one per gallery row.")
    return labels.to(gallery.device)


def knn_predict(query, gallery, gallery_ages, k: int = 20, chunk_size: int | None = None,
                memory_mb: float = DEFAULT_MEMORY_MB) -> torch.Tensor:
    """Age of each query = mean age of its k nearest gallery embeddings under L1 (Section 2.5, M = k).

    query: [m, d], gallery: [g, d], gallery_ages: [g] -> ages [m] (float32, float64
    if the ages are float64), on the gallery's device. Memory and tie rule as in
    :func:`knn_neighbours`; the mean is accumulated in float64.

    Taught in ``notebooks/07_siamese_metric_learning.ipynb``.
    """
    query, gallery = _pair(query, gallery)
    ages = _gallery_labels("gallery_ages", gallery_ages, gallery)
    indices, _ = _search(query, gallery, k, chunk_size, memory_mb)
    out_dtype = torch.float64 if ages.dtype == torch.float64 else torch.float32
    return ages.double()[indices].mean(dim=1).to(out_dtype)


def _binary_genders(name: str, value, allow_unknown: bool) -> torch.Tensor:
    genders = _checks.vector(name, value).to(torch.int64)
    allowed = (genders == 0) | (genders == 1) | ((genders == -1) if allow_unknown else False)
    if not bool(allowed.all()):
        bad = sorted(set(genders[~allowed].tolist()))[:5]
        hint = "0 = male, 1 = female, -1 = unknown" if allow_unknown else \
            "0 = male, 1 = female; leave samples of unknown gender out of the gallery"
        raise ValueError(f"{name} must hold {hint}; got {bad}.")
    return genders


def knn_gender_predict(query, gallery, gallery_genders, k: int = 20, chunk_size: int | None = None,
                       memory_mb: float = DEFAULT_MEMORY_MB) -> torch.Tensor:
    """Gender of each query by majority vote of its k nearest gallery embeddings (L1).

    query: [m, d], gallery: [g, d], gallery_genders: [g] in {0, 1} -> int64 [m].
    A tied vote (possible for even k) goes to the gender of the single nearest
    neighbour (the first in :func:`knn_neighbours`' order).

    Taught in ``notebooks/08_embeddings.ipynb``.
    """
    query, gallery = _pair(query, gallery)
    genders = _gallery_labels("gallery_genders", gallery_genders, gallery)
    genders = _binary_genders("gallery_genders", genders, allow_unknown=False)
    indices, _ = _search(query, gallery, k, chunk_size, memory_mb)
    votes = genders[indices]  # [m, k]
    female = votes.sum(dim=1)
    male = votes.shape[1] - female
    nearest = votes[:, 0]
    return torch.where(female > male, torch.ones_like(nearest),
                       torch.where(male > female, torch.zeros_like(nearest), nearest))


def knn_gender_accuracy(query, query_genders, gallery, gallery_genders, k: int = 20,
                        chunk_size: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> float:
    """Percent of queries whose gender the k-NN vote gets right (the paper's Table 2).

    Use it on the AGE-ONLY embedding of a model trained without gender labels: a
    score well above 50 % means the age metric has learnt gender cues by itself.
    query: [m, d], query_genders: [m] in {0, 1, -1}; queries with -1 (unknown) are
    left out. gallery: [g, d], gallery_genders: [g] in {0, 1}. Vote and tie rule
    as in :func:`knn_gender_predict`.

    Taught in ``notebooks/08_embeddings.ipynb``.
    """
    query = _embeddings("query", query)
    truth = _binary_genders("query_genders", query_genders, allow_unknown=True)
    _checks.same_length(query=query, query_genders=truth)
    known = truth >= 0
    if not bool(known.any()):
        raise ValueError("query_genders holds no known gender (all -1); nothing to score.")
    predicted = knn_gender_predict(query[known.to(query.device)], gallery, gallery_genders, k, chunk_size, memory_mb)
    correct = predicted.cpu() == truth[known].cpu()
    return 100.0 * float(correct.double().mean())


class Gallery:
    """The training set's embeddings, kept once, queried many times.

    embeddings: [g, d]; ages: [g]; genders: [g] in {0, 1, -1} or None.
    ``predict`` gives k-NN ages, ``neighbours`` the indices and L1 distances (for
    plots), ``gender_accuracy`` the emergent-gender score. ``state_dict`` holds
    plain tensors, so a gallery saves with ``torch.save`` and loads back with
    ``torch.load(..., weights_only=True)``.

    Taught in ``notebooks/07_siamese_metric_learning.ipynb``.
    """

    def __init__(self, embeddings, ages, genders=None):
        self.embeddings = _embeddings("embeddings", embeddings).detach()
        if self.embeddings.shape[0] == 0:
            raise ValueError("embeddings is empty; a gallery needs at least one training embedding.")
        self.ages = _gallery_labels("ages", ages, self.embeddings).detach()
        self.genders = None
        if genders is not None:
            genders = _gallery_labels("genders", genders, self.embeddings)
            self.genders = _binary_genders("genders", genders, allow_unknown=True)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def device(self) -> torch.device:
        return self.embeddings.device

    def to(self, device) -> "Gallery":
        """A copy on ``device``."""
        genders = None if self.genders is None else self.genders.to(device)
        return Gallery(self.embeddings.to(device), self.ages.to(device), genders)

    def neighbours(self, query, k: int = 20, chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """query [m, d] -> (indices [m, k], L1 distances [m, k]), nearest first."""
        return knn_neighbours(self._query(query), self.embeddings, k, chunk_size)

    def predict(self, query, k: int = 20, chunk_size: int | None = None) -> torch.Tensor:
        """query [m, d] -> mean age of the k nearest gallery entries [m]."""
        return knn_predict(self._query(query), self.embeddings, self.ages, k, chunk_size)

    def gender_accuracy(self, query, query_genders, k: int = 20, chunk_size: int | None = None) -> float:
        """Percent of queries whose gender the k-NN vote recovers; gallery entries of
        unknown gender (-1) are left out of the vote."""
        if self.genders is None:
            raise ValueError("This gallery was built without genders; pass genders=... to Gallery(...).")
        known = self.genders >= 0
        return knn_gender_accuracy(self._query(query), query_genders, self.embeddings[known],
                                   self.genders[known], k, chunk_size)

    def _query(self, query) -> torch.Tensor:
        if isinstance(query, torch.Tensor):
            return query.detach().to(self.device)
        return query

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain tensors: ``embeddings``, ``ages`` and, when known, ``genders``."""
        state = {"embeddings": self.embeddings, "ages": self.ages}
        if self.genders is not None:
            state["genders"] = self.genders
        return state

    def load_state_dict(self, state: dict) -> None:
        """Replace the contents with those of a :meth:`state_dict` (checked as in the constructor)."""
        if not isinstance(state, dict) or not {"embeddings", "ages"} <= set(state):
            keys = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"A gallery state needs the keys 'embeddings' and 'ages', got {keys}.")
        unknown = set(state) - {"embeddings", "ages", "genders"}
        if unknown:
            raise ValueError(f"Unexpected keys in a gallery state: {sorted(unknown)}.")
        fresh = Gallery(state["embeddings"], state["ages"], state.get("genders"))
        self.embeddings, self.ages, self.genders = fresh.embeddings, fresh.ages, fresh.genders

    @classmethod
    def from_state_dict(cls, state: dict) -> "Gallery":
        gallery = cls.__new__(cls)
        gallery.load_state_dict(state)
        return gallery
