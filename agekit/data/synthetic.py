"""Synthetic aging faces: the kit's built-in data set, drawn procedurally.

Real face data sets cannot be downloaded in a classroom without internet, so the kit
draws its own: cartoon-like but recognisable faces (head, hair, ears, eyes, brows,
nose, mouth, neck and shoulders on a background) whose look follows age.

* **Age** acts through several cues at different times of life: head and feature
  proportions in childhood (big cranium and eyes, short lower face, small jaw), then
  nasolabial folds, forehead lines, crow's feet, under-eye bags, greying and receding
  hair, thinner lips, a sagging jaw and age spots. Every cue is a smooth function of
  age, so neighbouring ages are hard to tell apart, just as in photos.
* **Gender** shows in hair length, jaw, neck and brow shape, lips and, for some adult
  men, a beard; no single cue separates the genders perfectly.
* **Identity**: each person has a skin tone, hair colour, face shape and an
  *apparent-age offset* (normal, sd 3 years) that shifts every age cue. No model can
  undo that offset from one photo, so it sets an error floor, as in real data. The
  same person is photographed at several ages (like CACD or AgeDB).
* **Nuisances** (``difficulty`` easy | standard | hard): pose, scale, lighting,
  background, blur, noise and glasses.
* **Ages** are whole years drawn from a non-uniform prior (``age_prior``): many young
  and middle-aged adults, few children and elderly people.

Same arguments, same pixels: the random numbers come from a ``torch.Generator`` seeded
with ``seed`` and, for per-person traits, from a hash of (seed, identity). The drawing
itself is in ``agekit.data._render``, the labelled preview grid in ``agekit.data.preview``.

Taught in ``notebooks/01_synthetic_faces.ipynb``.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from agekit import _checks
from agekit._io import atomic_write
from agekit.data import _render
from agekit.data.preview import PREVIEW_AGES, face_grid, preview_grid

DIFFICULTIES = tuple(_render.DIFFICULTIES)
FILE_NAME = "faces.pt"
FORMAT = "agekit.synthetic_faces"
FORMAT_VERSION = 1
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024

# (mean, sd, weight) of a Gaussian mixture over age, in years: a peak of young adults,
# a broad middle age, and thin tails of children and elderly people.
AGE_MIXTURE = ((3.0, 3.0, 0.05), (10.0, 4.0, 0.06), (28.0, 6.5, 0.36), (40.0, 9.0, 0.30),
               (58.0, 10.0, 0.16), (75.0, 8.0, 0.07))


@dataclass(frozen=True, eq=False)
class SyntheticFaces:
    """A data set of synthetic face photos and their labels.

    images: uint8 [N, 3, H, W]; ages: int64 [N] whole years; genders: int64 [N]
    (0 = male, 1 = female); identities: int64 [N], the person in each photo;
    apparent_ages: float32 [N], how old each face looks (age plus the person's offset).
    The remaining fields are the arguments of ``make_synthetic_faces``.

    Taught in ``notebooks/01_synthetic_faces.ipynb``.
    """

    images: torch.Tensor
    ages: torch.Tensor
    genders: torch.Tensor
    identities: torch.Tensor
    apparent_ages: torch.Tensor
    image_size: int
    seed: int
    difficulty: str
    age_range: tuple[int, int]
    n_identities: int

    def __post_init__(self):
        n = self.images.shape[0]
        if self.images.dim() != 4 or self.images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {self.images.dtype} {tuple(self.images.shape)}.")
        for name in ("ages", "genders", "identities", "apparent_ages"):
            value = getattr(self, name)
            if value.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) to match images, got {tuple(value.shape)}.")

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index) -> SyntheticFaces:
        """The photos selected by ``index`` (indices, a boolean mask or a slice), same metadata."""
        if isinstance(index, int):
            index = [index]
        if isinstance(index, (list, tuple)):
            index = torch.as_tensor(index, dtype=torch.long)
        return replace(self, **{name: getattr(self, name)[index] for name in _TENSOR_FIELDS})

    @property
    def meta(self) -> dict:
        """The generator's arguments as plain Python values."""
        return {"image_size": self.image_size, "seed": self.seed, "difficulty": self.difficulty,
                "age_range": list(self.age_range), "n_identities": self.n_identities}

    def __repr__(self) -> str:
        n_people = int(self.identities.unique().numel()) if len(self) else 0
        return (f"SyntheticFaces({len(self)} photos of {n_people} people, {self.image_size}px, "
                f"ages {self.age_range[0]}-{self.age_range[1]}, difficulty={self.difficulty!r}, seed={self.seed})")


_TENSOR_FIELDS = ("images", "ages", "genders", "identities", "apparent_ages")


# ----------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------


def _check_common(image_size, difficulty, seed) -> tuple[int, str, int]:
    image_size = _checks.positive_int("image_size", image_size, minimum=1)
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size={image_size} is too small to draw a face; use at least {MIN_IMAGE_SIZE} pixels.")
    if image_size > MAX_IMAGE_SIZE:
        raise ValueError(f"image_size={image_size} is larger than {MAX_IMAGE_SIZE}; draw smaller faces and resize.")
    difficulty = _checks.choice("difficulty", difficulty, DIFFICULTIES)
    seed = _checks.positive_int("seed", seed, minimum=0)
    if seed >= 2 ** 63:
        raise ValueError(f"seed={seed} is too large; use a whole number below 2**63.")
    return image_size, difficulty, seed


def _check_age_range(age_range) -> tuple[int, int]:
    low, high = _checks.age_range("age_range", age_range)
    if high > 120:
        raise ValueError(f"age_range={tuple(age_range)!r} goes beyond 120 years; pick an oldest age <= 120.")
    return low, high


# ----------------------------------------------------------------------------------
# who is photographed, at which ages
# ----------------------------------------------------------------------------------


def age_prior(age_range: tuple[int, int] = (1, 90)) -> torch.Tensor:
    """Probability of each whole age in ``age_range`` under ``AGE_MIXTURE``.

    Returns float64 [high - low + 1], summing to 1; entry i is age low + i.
    Taught in ``notebooks/01_synthetic_faces.ipynb``.
    """
    low, high = _check_age_range(age_range)
    ages = torch.arange(low, high + 1, dtype=torch.float64)
    density = sum(w / s * torch.exp(-0.5 * ((ages - m) / s) ** 2) for m, s, w in AGE_MIXTURE)
    density = density + 1e-4 * density.max()  # keep every age possible, if rare
    return density / density.sum()


def _reflect(ages: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """Fold ages that fall outside [low, high] back inside, like a mirror at each end."""
    ages = torch.where(ages < low, 2 * low - ages, ages)
    ages = torch.where(ages > high, 2 * high - ages, ages)
    return ages.clamp(low, high)


def sample_people(n: int, n_identities: int, age_range: tuple[int, int], max_age_span: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Who is in each photo and at what age.

    Every person gets n / n_identities photos (give or take one), a central age from
    ``age_prior`` and a span of 4 to ``max_age_span`` years over which the photos are
    spread, like a celebrity photographed over a career.
    Returns identities int64 [n] (0 .. n_identities - 1) and ages int64 [n].
    """
    low, high = age_range
    identities = (torch.arange(n) % n_identities)[torch.randperm(n, generator=generator)]
    centre = torch.multinomial(age_prior(age_range), n_identities, replacement=True, generator=generator) + low
    span = 4.0 + (max_age_span - 4.0) * torch.rand(n_identities, generator=generator, dtype=torch.float64)
    offset = (torch.rand(n, generator=generator, dtype=torch.float64) - 0.5) * span[identities]
    ages = torch.round(centre[identities].double() + offset).long()
    return identities, _reflect(ages, low, high)


# ----------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------


def make_synthetic_faces(n: int = 2000, image_size: int = 64, seed: int = 0, difficulty: str = "standard",
                         age_range: tuple[int, int] = (1, 90), n_identities: int | None = None,
                         max_age_span: int = 30, device: str | torch.device = "cpu") -> SyntheticFaces:
    """Draw ``n`` synthetic face photos with age, gender and identity labels.

    n: number of photos; image_size: H = W in pixels (>= 16); seed: same seed, same
    pixels; difficulty: "easy" | "standard" | "hard" nuisances; age_range: (youngest,
    oldest) whole ages, inclusive; n_identities: number of people (default n / 5,
    so about five photos each); max_age_span: the widest spread in years of one
    person's photos; device: where to draw (pixels can differ in the last bit
    between devices; on one device they are fixed). On the CPU the photos are drawn
    on ``torch.get_num_threads()`` cores at once; the pixels do not depend on it.

    Returns ``SyntheticFaces`` with images uint8 [n, 3, H, W] and ages, genders,
    identities int64 [n].

    >>> faces = make_synthetic_faces(n=8, image_size=32, seed=1)
    >>> faces.images.shape, faces.ages.dtype
    (torch.Size([8, 3, 32, 32]), torch.int64)

    Taught in ``notebooks/01_synthetic_faces.ipynb``.
    """
    n = _checks.positive_int("n", n)
    image_size, difficulty, seed = _check_common(image_size, difficulty, seed)
    age_range = _check_age_range(age_range)
    if n_identities is None:
        n_identities = max(1, round(n / 5))
    n_identities = _checks.positive_int("n_identities", n_identities)
    if n_identities > n:
        raise ValueError(f"n_identities={n_identities} is more than the n={n} photos; each person needs a photo.")
    max_age_span = _checks.positive_int("max_age_span", max_age_span, minimum=4)
    device = torch.device(device)

    generator = torch.Generator().manual_seed(seed)
    identities, ages = sample_people(n, n_identities, age_range, max_age_span, generator)
    genders = _render.identity_genders(seed, identities)
    looks = _render.apparent_ages(ages, _render.apparent_age_offsets(seed, identities))
    uniforms = torch.rand(n, _render.NUM_NUISANCE_UNIFORMS, generator=generator)
    images = _render.render_batches(looks, genders, identities, uniforms, difficulty, seed, image_size,
                                    generator, device)
    return SyntheticFaces(images, ages, genders, identities, looks, image_size, seed, difficulty, age_range,
                          n_identities)


def _gender_code(gender) -> int:
    names = {"male": 0, "m": 0, "man": 0, "female": 1, "f": 1, "woman": 1}
    if isinstance(gender, str) and gender.lower() in names:
        return names[gender.lower()]
    if not isinstance(gender, bool) and isinstance(gender, int) and gender in (0, 1):
        return gender
    raise ValueError(f"gender must be 0 (male), 1 (female), 'male' or 'female', got {gender!r}.")


def render_faces(ages, genders, identities, image_size: int = 128, difficulty: str = "easy", seed: int = 0,
                 device: str | torch.device = "cpu") -> torch.Tensor:
    """Draw chosen people at chosen ages: ages float [b], genders, identities int [b] -> uint8 [b, 3, H, W].

    A person's traits and photo conditions (pose, light, background, glasses draw)
    depend only on (seed, identity), so changing the age alone shows the same person
    older or younger. Person k with his or her gender from ``make_synthetic_faces``
    (same seed) is the same person here. Ages may be fractional.

    Taught in ``notebooks/01_synthetic_faces.ipynb``.
    """
    image_size, difficulty, seed = _check_common(image_size, difficulty, seed)
    ages = _checks.vector("ages", ages, torch.float32)
    genders = _checks.vector("genders", genders, torch.int64)
    identities = _checks.vector("identities", identities, torch.int64)
    _checks.same_length(ages=ages, genders=genders, identities=identities)
    if ((ages < 0) | (ages > 120)).any():
        raise ValueError(f"ages must lie between 0 and 120 years, got {ages[(ages < 0) | (ages > 120)][:3].tolist()}.")
    if ((genders != 0) & (genders != 1)).any():
        raise ValueError(f"genders must be 0 (male) or 1 (female), got {genders.unique().tolist()}.")
    if (identities < 0).any():
        raise ValueError(f"identities must be >= 0, got {identities[identities < 0][:3].tolist()}.")
    streams = 1000 + torch.arange(_render.NUM_NUISANCE_UNIFORMS)
    uniforms = _render.hash_uniform(seed, identities[:, None], streams[None, :])
    looks = _render.apparent_ages(ages, _render.apparent_age_offsets(seed, identities))
    generator = torch.Generator().manual_seed(seed)
    return _render.render_batches(looks, genders, identities, uniforms, difficulty, seed, image_size, generator,
                                  torch.device(device))


def render_face(age: float, gender, identity: int = 0, image_size: int = 128, difficulty: str = "easy",
                seed: int = 0) -> torch.Tensor:
    """One face, for sliders: the same ``identity`` keeps its traits at every ``age``.

    age: years (0-120, fractional allowed); gender: 0 / "male" or 1 / "female";
    identity: which person (>= 0). Returns uint8 [3, H, W].

    Taught in ``notebooks/01_synthetic_faces.ipynb``.
    """
    if isinstance(age, bool) or not isinstance(age, (int, float)) or not math.isfinite(age):
        raise TypeError(f"age must be a number of years, got {age!r}.")
    identity = _checks.positive_int("identity", identity, minimum=0)
    return render_faces([float(age)], [_gender_code(gender)], [identity], image_size, difficulty, seed)[0]


# ----------------------------------------------------------------------------------
# saving and loading, with atomic writes
# ----------------------------------------------------------------------------------


def save_synthetic_faces(faces: SyntheticFaces, directory) -> Path:
    """Write ``faces`` to DIRECTORY/faces.pt (created if needed) atomically; return the path.

    The file is a dict of tensors plus plain metadata, readable with
    ``torch.load(path, weights_only=True)``.

    Taught in ``notebooks/01_synthetic_faces.ipynb``.
    """
    if not isinstance(faces, SyntheticFaces):
        raise TypeError(f"faces must be SyntheticFaces (from make_synthetic_faces), got {type(faces).__name__}.")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"directory={str(directory)!r} is a file; give a folder to write {FILE_NAME} into.")
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "meta": faces.meta}
    payload.update({name: getattr(faces, name).contiguous() for name in _TENSOR_FIELDS})
    return atomic_write(directory / FILE_NAME, lambda handle: torch.save(payload, handle))


def load_synthetic_faces(directory) -> SyntheticFaces:
    """Read faces saved by ``save_synthetic_faces`` (a folder, or the faces.pt file itself).

    Taught in ``notebooks/01_synthetic_faces.ipynb``.
    """
    path = Path(directory)
    if path.is_dir() or not path.suffix:
        path = path / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"No synthetic faces at {str(path)!r}. Write them first with save_synthetic_faces(faces, folder) "
            f"or `agekit data synth --out {path.parent}`."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise ValueError(f"{str(path)!r} is not a synthetic-faces file written by agekit ({error}).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a synthetic-faces file written by agekit "
                         f"(expected format {FORMAT!r}); write one with save_synthetic_faces.")
    if payload.get("version") != FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} has format version {payload.get('version')!r}; this agekit reads "
                         f"version {FORMAT_VERSION}. Regenerate it with `agekit data synth`.")
    missing = [name for name in (*_TENSOR_FIELDS, "meta") if name not in payload]
    if missing:
        raise ValueError(f"{str(path)!r} lacks {missing}; it is damaged. Regenerate it with `agekit data synth`.")
    meta = dict(payload["meta"])
    meta["age_range"] = tuple(meta["age_range"])
    return SyntheticFaces(**{name: payload[name] for name in _TENSOR_FIELDS}, **meta)


def write_synthetic_dataset(out_dir, n: int = 2000, image_size: int = 64, seed: int = 0,
                            difficulty: str = "standard", preview: bool = False) -> dict[str, Path]:
    """Draw a data set and write OUT_DIR/faces.pt (and OUT_DIR/preview.png): returns {what: path}.

    Called by ``agekit data synth --out DIR --n N --size S --seed K [--difficulty D] [--preview]``.
    Taught in ``notebooks/01_synthetic_faces.ipynb``.
    """
    faces = make_synthetic_faces(n=n, image_size=image_size, seed=seed, difficulty=difficulty)
    written = {"faces": save_synthetic_faces(faces, out_dir)}
    if preview:
        written["preview"] = preview_grid(Path(out_dir) / "preview.png", faces=faces, rows_per_gender=2)
    return written


__all__ = [
    "AGE_MIXTURE", "DIFFICULTIES", "PREVIEW_AGES", "SyntheticFaces", "age_prior", "face_grid",
    "load_synthetic_faces", "make_synthetic_faces", "preview_grid", "render_face", "render_faces",
    "sample_people", "save_synthetic_faces", "write_synthetic_dataset",
]
