"""Decoding a photo as it looks: one place that opens image files and turns every mode into 8-bit RGB.

``Image.convert("RGB")`` alone stores some files wrongly: 16-bit greyscale
(``I;16``) is clipped to white, 32-bit integer and float images come out black
or white, and transparent pixels keep whatever colour hides under them. So
``open_rgb`` classifies the decoded mode first:

* ``1``, ``L``, ``P``, ``RGB``, ``RGBX``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``:
  Pillow's own conversion to RGB (CMYK through its colour separation);
* any transparency (``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa``/``La``, a
  palette or greyscale with a transparent colour): composited over
  ``BACKGROUND`` (black, the colour that pads faces to a square);
* ``I;16*`` (16-bit): scaled to 8 bits, ``v * 255 / 65535``;
* ``I`` (32-bit integers): kept when all values lie in [0, 255], scaled from
  16 bits when they lie in [0, 65535], else stretched from min..max to 0..255;
* ``F`` (float): values in [0, 1] are scaled by 255, values in [0, 255] kept,
  anything else stretched from min..max; NaN becomes 0.

The camera's EXIF orientation is applied (phones store portraits as rotated
landscapes), animated files (GIF, APNG, WebP, multi-page TIFF) give their first
frame, and every failure (not an image, truncated, empty, more pixels than
``Image.MAX_IMAGE_PIXELS`` allows) raises ``ImageError`` with a one-line reason.

Used by ``agekit.data.prepare.load_face`` (``notebooks/10_real_datasets.ipynb``).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

BACKGROUND = (0, 0, 0)  # transparent pixels are shown over this colour
_DIRECT = {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}


class ImageError(ValueError):
    """An image file that cannot be decoded; the message says why in one line."""


def _size(source) -> int | None:
    """Bytes in a path or in-memory file, None when unknown."""
    if hasattr(source, "getbuffer"):
        return source.getbuffer().nbytes
    try:
        return os.path.getsize(source)
    except (OSError, TypeError):
        return None


def _scaled(values: np.ndarray, kind: str) -> np.ndarray:
    """Grey values of an ``I;16``, ``I`` or ``F`` image as uint8 [H, W] (rules in the module docstring)."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if kind == "I;16" or (kind == "I" and low >= 0 and high > 255 and high <= 65535):
        values = values * (255 / 65535)
    elif kind == "F" and low >= 0 and high <= 1:
        values = values * 255
    elif low < 0 or high > 255:
        values = (values - low) * (255 / (high - low)) if high > low else np.zeros_like(values)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """An opened (decoded or lazy) Pillow image of any mode as it looks, in mode RGB."""
    mode = image.mode
    if mode.startswith("I;16"):
        return Image.fromarray(_scaled(np.asarray(image), "I;16")).convert("RGB")
    if mode in ("I", "F"):
        return Image.fromarray(_scaled(np.asarray(image), mode)).convert("RGB")
    if mode in _ALPHA or (mode in ("P", "L", "RGB") and "transparency" in image.info):
        rgba = (image.convert("LA") if mode == "La" else image).convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "LAB":  # Pillow's plain convert would copy L, a, b into R, G, B
        from PIL import ImageCms

        lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
        return ImageCms.applyTransform(image, ImageCms.buildTransform(lab, srgb, "LAB", "RGB"))
    if mode in _DIRECT:
        return image.convert("RGB")
    raise ImageError(f"its pixel mode {mode!r} is not one agekit can show; convert it to RGB")


def open_rgb(source) -> Image.Image:
    """Decode an image file (path or binary file object) as it looks: an RGB Pillow image, upright.

    Raises ``ImageError`` for anything that is not a decodable image.
    Used by ``load_face``, so preparation and ``agekit predict`` see the same pixels.
    """
    try:
        with Image.open(source) as image:
            image.seek(0)  # first frame of an animation
            try:
                upright = ImageOps.exif_transpose(image)
            except Exception:  # a damaged EXIF block: keep the pixels as stored
                upright = image
            return to_rgb(upright)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"too many pixels, a possible decompression bomb ({error})") from None
    except UnidentifiedImageError:
        if _size(source) == 0:
            raise ImageError("the file is empty (0 bytes)") from None
        raise ImageError("not an image Pillow can read (wrong type or damaged header)") from None
    except Exception as error:  # Pillow raises many kinds for broken files; all mean "unreadable"
        raise ImageError(f"damaged or truncated ({type(error).__name__}: {error})") from None
