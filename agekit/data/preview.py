"""A labelled grid of synthetic faces: columns are ages, rows are people, men above women.

``face_grid`` shows it as a PIL image and ``preview_grid`` writes it as a PNG, either
of people drawn for the grid (``render_faces``) or of photos picked from a data set.
Both are also importable from ``agekit.data.synthetic``.

Taught in ``notebooks/01_synthetic_faces.ipynb``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from agekit import _checks
from agekit._io import atomic_write

if TYPE_CHECKING:
    from agekit.data.synthetic import SyntheticFaces

PREVIEW_AGES = (1, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90)


def _pick_for_grid(faces: SyntheticFaces, ages, rows_per_gender: int) -> tuple[torch.Tensor, list[str]]:
    """For each gender and column age, the photos whose ages are nearest: -> indices [2 * rows, columns]."""
    target = torch.as_tensor(ages, dtype=torch.float64)
    rows, labels = [], []
    for gender, name in ((0, "male"), (1, "female")):
        penalty = (faces.genders != gender).double() * 1e6
        cost = (faces.ages.double()[None, :] - target[:, None]).abs() + penalty[None, :]
        order = torch.argsort(cost, dim=1, stable=True)[:, :rows_per_gender]    # [columns, rows]
        rows.append(order.T)
        labels += [name] * rows_per_gender
    return torch.cat(rows), labels


def face_grid(faces: SyntheticFaces | None = None, ages=PREVIEW_AGES, rows_per_gender: int = 3,
              image_size: int = 96, seed: int = 0, difficulty: str = "easy", labels: bool = True):
    """A PIL image of faces: columns are ages (youngest left), rows are people, men above women.

    Without ``faces``, each row is one person (identities 0, 1, ...) drawn at every age
    with ``render_faces``. With ``faces``, each tile is the photo of that gender whose
    age is nearest the column's age, captioned with its true age.

    Taught in ``notebooks/01_synthetic_faces.ipynb``.
    """
    from PIL import Image, ImageDraw, ImageFont

    from agekit.data.synthetic import SyntheticFaces, render_faces

    rows_per_gender = _checks.positive_int("rows_per_gender", rows_per_gender)
    ages = _checks.vector("ages", ages, torch.float32)
    captions = None
    if faces is None:
        columns = ages.numel()
        genders = torch.tensor([0, 1]).repeat_interleave(rows_per_gender)
        people = torch.arange(2 * rows_per_gender)
        tiles = render_faces(ages.repeat(2 * rows_per_gender), genders.repeat_interleave(columns),
                             people.repeat_interleave(columns), image_size, difficulty, seed)
        row_labels = [f"{'male' if g == 0 else 'female'} #{p}" for g, p in zip(genders.tolist(), people.tolist())]
    else:
        if not isinstance(faces, SyntheticFaces):
            raise TypeError(f"faces must be SyntheticFaces or None, got {type(faces).__name__}.")
        if not ((faces.genders == 0).any() and (faces.genders == 1).any()):
            raise ValueError("faces must contain both genders to draw a preview; use more photos.")
        index, row_labels = _pick_for_grid(faces, ages, rows_per_gender)
        tiles = faces.images[index.reshape(-1)]
        captions = [str(a) for a in faces.ages[index.reshape(-1)].tolist()]
        image_size = faces.images.shape[-1]
    columns = ages.numel()
    gap = 2
    font = ImageFont.load_default(size=max(10, image_size // 7))
    left, head = (90, 22) if labels else (0, 0)
    width = left + columns * (image_size + gap)
    height = head + len(row_labels) * (image_size + gap)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    pixels = tiles.permute(0, 2, 3, 1).numpy()
    for k in range(tiles.shape[0]):
        r, c = divmod(k, columns)
        x, y = left + c * (image_size + gap), head + r * (image_size + gap)
        canvas.paste(Image.fromarray(pixels[k]), (x, y))
        if captions is not None and labels:
            draw.text((x + 3, y + image_size - font.size - 3), captions[k], fill=(255, 255, 255), font=font,
                      stroke_width=2, stroke_fill=(0, 0, 0))
    if labels:
        for c, age in enumerate(ages.tolist()):
            text = f"{age:g}" if faces is None else f"~{age:g}"
            draw.text((left + c * (image_size + gap) + image_size // 2, head // 2), text, fill=(0, 0, 0),
                      font=font, anchor="mm")
        for r, name in enumerate(row_labels):
            draw.text((6, head + r * (image_size + gap) + image_size // 2), name, fill=(0, 0, 0), font=font,
                      anchor="lm")
    return canvas


def preview_grid(path, faces: SyntheticFaces | None = None, ages=PREVIEW_AGES, rows_per_gender: int = 3,
                 image_size: int = 96, seed: int = 0, difficulty: str = "easy", labels: bool = True,
                 palette: bool = False) -> Path:
    """Write ``face_grid(...)`` as a PNG at ``path`` (atomically) and return the path.

    palette: store 256 colours instead of full RGB, a file about five times smaller
    (the pixel noise makes full-colour PNGs large).

    Taught in ``notebooks/01_synthetic_faces.ipynb``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path={str(path)!r} must end in .png.")
    image = face_grid(faces, ages, rows_per_gender, image_size, seed, difficulty, labels)
    if palette:
        image = image.quantize(256, method=2, dither=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda handle: image.save(handle, format="PNG", optimize=True))


__all__ = ["PREVIEW_AGES", "face_grid", "preview_grid"]
