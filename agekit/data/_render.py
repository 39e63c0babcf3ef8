"""Drawing synthetic faces with signed distances on a pixel grid.

Every part of a face (head, hair, ears, eyes, brows, nose, mouth, wrinkles, glasses)
is an implicit shape: a signed distance ``d`` that is negative inside the shape. Its
coverage of a pixel of width ``px`` is a one-pixel ramp,

    alpha = clamp(1/2 - d / px, 0, 1)                                  # eq. R1

which anti-aliases edges and is exactly zero one pixel away from the shape. Parts are
stacked back to front with the "over" operator on premultiplied colour,

    C <- (1 - alpha) C + alpha c,     A <- (1 - alpha) A + alpha      # eq. R2

All of it runs on whole batches at once: a face's numbers are tensors ``[b, 1, 1]``
broadcast against the pixel grid ``[1, H, W]``; there is no loop over faces.

The face is drawn upright in a canonical frame (x right, y down, both in [-1, 1]),
then posed (rotation, scale, shift, a horizontal squash for yaw) by one bilinear warp,
laid over a background drawn in image space, lit, blurred and made noisy.

Age acts through smooth functions of the *apparent* age, so neighbouring ages look
alike: ``growth`` shapes childhood proportions, ``ramp`` switches on each sign of
ageing over a span of decades (see ``face_layout``).

Per-person traits come from a counter-based hash of (seed, identity, trait), so a
person looks the same in every data set drawn with that seed and in ``render_face``.

Taught in ``notebooks/01_synthetic_faces.ipynb``; the public entry points live in
``agekit.data.synthetic``.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------
# counter-based random numbers
# ----------------------------------------------------------------------------------

_M32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xorshift-multiply rounds) on int64 tensors holding values < 2**32.

    The multipliers are below 2**31, so no product leaves the int64 range.
    """
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & _M32
    return x ^ (x >> 16)


def hash_uniform(seed: int, keys: torch.Tensor, streams: torch.Tensor) -> torch.Tensor:
    """Uniform numbers in [0, 1) that depend only on (seed, key, stream).

    keys: int64 [...]; streams: int64 broadcastable with keys -> float32 [...].
    A multiple of 2**-24, so float32 holds it exactly.
    """
    keys = torch.as_tensor(keys, dtype=torch.int64)
    streams = torch.as_tensor(streams, dtype=torch.int64, device=keys.device)
    s = _mix32(torch.tensor((seed >> 32) & _M32, dtype=torch.int64, device=keys.device))
    s = _mix32(s ^ (seed & _M32))
    h = _mix32(s ^ (keys & _M32))
    h = _mix32(h ^ ((keys >> 32) & _M32))
    h = _mix32(h ^ ((streams & _M32) * 0x61C88647 & _M32))
    return (h >> 8).to(torch.float32) / float(1 << 24)


# One uniform per trait and person; the mapping to looks is in ``face_layout``.
TRAITS = (
    "gender", "skin_tone", "skin_warmth", "hair_colour", "hair_shade", "hair_length",
    "hair_style", "hair_volume", "face_width", "face_length", "jaw", "eye_spacing",
    "eye_size", "eye_colour", "brow_thickness", "brow_arch", "nose_size", "mouth_width",
    "lip_fullness", "grey_onset", "bald", "bald_onset", "beard", "glasses", "glasses_colour",
    "age_offset", "skin_ageing", "ear_size", "wrinkle_phase", "hair_flip", "eye_height",
    "lipstick",
)
_SPOT_GRID = 10  # age spots: at most one per cell of a 10 x 10 grid over the image


def identity_traits(seed: int, identities: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-person uniforms, one per name in ``TRAITS``: identities [b] -> {name: [b]}."""
    streams = torch.arange(len(TRAITS), device=identities.device)
    u = hash_uniform(seed, identities[:, None], streams[None, :])
    return {name: u[:, i] for i, name in enumerate(TRAITS)}


def identity_genders(seed: int, identities: torch.Tensor) -> torch.Tensor:
    """Gender of each person, 0 = male, 1 = female: identities [b] -> int64 [b]."""
    return (identity_traits(seed, identities)["gender"] >= 0.5).long()


def apparent_age_offsets(seed: int, identities: torch.Tensor, sd: float = 3.0) -> torch.Tensor:
    """Each person's look-older/younger offset in years, normal with sd ``sd``: [b] -> [b]."""
    u = identity_traits(seed, identities)["age_offset"]
    return sd * math.sqrt(2.0) * torch.erfinv((2.0 * u - 1.0).clamp(-0.999999, 0.999999))


def apparent_ages(ages: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """How old a face looks: its age plus the person's offset, damped in childhood.

    Children's looks change fast with age, so a fixed number of years would be a huge
    error at age 2; the offset grows to full size by age 20. ages, offsets [b] -> [b].
    """
    ages = ages.to(torch.float32)
    return (ages + offsets * (ages / 20.0).clamp(0.25, 1.0)).clamp_min(0.25)


# ----------------------------------------------------------------------------------
# nuisances: pose, light, background, blur, noise, glasses
# ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difficulty:
    """How strong the nuisances are; the fields are the largest values drawn."""

    rotation_deg: float     # in-plane rotation, uniform in +-rotation_deg
    yaw: float              # head turn, features shift sideways and the head narrows
    scale: tuple[float, float]
    shift: float            # translation, fraction of the half-width
    light: tuple[float, float]   # strength of a linear lighting gradient
    background_texture: float    # amplitude of the background's blotches
    stripes: float               # amplitude of background stripes
    blur: tuple[float, float]    # Gaussian sigma in pixels of a 64-pixel image
    noise: tuple[float, float]   # sd of pixel noise, intensities in [0, 1]
    glasses: float               # roughly the share of photos with glasses


DIFFICULTIES = {
    "easy": Difficulty(0.0, 0.0, (1.0, 1.0), 0.0, (0.0, 0.08), 0.03, 0.0, (0.0, 0.0), (0.003, 0.008), 0.06),
    "standard": Difficulty(7.0, 0.35, (0.9, 1.07), 0.05, (0.0, 0.25), 0.10, 0.03, (0.0, 0.7), (0.008, 0.025), 0.15),
    "hard": Difficulty(15.0, 0.6, (0.8, 1.12), 0.10, (0.05, 0.45), 0.22, 0.08, (0.2, 1.4), (0.02, 0.055), 0.30),
}
_BG_GRID = 6  # background blotches: a 6 x 6 random field per photo
NUISANCES = (
    "rotation", "yaw", "scale", "shift_x", "shift_y", "light_angle", "light_strength",
    "bg_hue", "bg_saturation", "bg_value", "bg_gradient", "stripe_angle", "stripe_phase",
    "blur", "noise", "glasses", "smile", "clothes_hue", "clothes_value", "gaze",
)
NUM_NUISANCE_UNIFORMS = len(NUISANCES) + _BG_GRID * _BG_GRID


def nuisances_from_uniforms(u: torch.Tensor, cfg: Difficulty) -> dict[str, torch.Tensor]:
    """Map uniforms [b, NUM_NUISANCE_UNIFORMS] to physical nuisances {name: [b] or [b, ...]}."""
    n = {name: u[:, i] for i, name in enumerate(NUISANCES)}

    def between(x, low, high):
        return low + (high - low) * x

    return {
        "rotation": math.radians(cfg.rotation_deg) * (2 * n["rotation"] - 1),
        "yaw": cfg.yaw * (2 * n["yaw"] - 1),
        "scale": between(n["scale"], *cfg.scale),
        "shift": cfg.shift * (2 * torch.stack([n["shift_x"], n["shift_y"]], 1) - 1),
        "light_angle": 2 * math.pi * n["light_angle"],
        "light_strength": between(n["light_strength"], *cfg.light),
        "bg_rgb": _hsv_to_rgb(n["bg_hue"], between(n["bg_saturation"], 0.05, 0.45), between(n["bg_value"], 0.35, 0.9)),
        "bg_gradient": 0.25 * (2 * n["bg_gradient"] - 1),
        "bg_field": u[:, len(NUISANCES):].reshape(-1, 1, _BG_GRID, _BG_GRID),
        "bg_texture": torch.full_like(n["rotation"], cfg.background_texture),
        "stripes": torch.full_like(n["rotation"], cfg.stripes),
        "stripe_angle": math.pi * n["stripe_angle"],
        "stripe_phase": 2 * math.pi * n["stripe_phase"],
        "blur": between(n["blur"], *cfg.blur),
        "noise": between(n["noise"], *cfg.noise),
        "glasses_draw": n["glasses"],
        "glasses_rate": torch.full_like(n["rotation"], cfg.glasses),
        "smile": between(n["smile"], -0.4, 1.0),
        "clothes_rgb": _hsv_to_rgb(n["clothes_hue"], torch.full_like(n["clothes_hue"], 0.45),
                                   between(n["clothes_value"], 0.2, 0.8)),
        "gaze": 0.012 * (2 * n["gaze"] - 1),
    }


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Colours from hue, saturation, value, each [b] in [0, 1] -> [b, 3]."""
    k = torch.tensor([5.0, 3.0, 1.0], device=h.device)
    k = (k + 6.0 * h[:, None]) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------
# how age, gender and traits set the geometry and colours of a face
# ----------------------------------------------------------------------------------


def ramp(a: torch.Tensor, start: float, end: float) -> torch.Tensor:
    """Smoothstep from 0 (at ``start``) to 1 (at ``end``): continuous with a continuous slope."""
    t = ((a - start) / (end - start)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def growth(a: torch.Tensor) -> torch.Tensor:
    """Childhood growth, 0 at birth to 1 at 18, fastest early: 1 - (1 - a/18)^2."""
    return 1.0 - (1.0 - (a / 18.0).clamp(0.0, 1.0)) ** 2


def _lerp(a, b, t):
    return a + (b - a) * t


def _palette(table: list[tuple[float, float, float]], u: torch.Tensor) -> torch.Tensor:
    """Linear interpolation along a list of colours; u [b] in [0, 1] -> [b, 3]."""
    colours = torch.tensor(table, device=u.device)
    pos = u.clamp(0.0, 1.0) * (len(table) - 1)
    low = pos.floor().long().clamp(max=len(table) - 2)
    frac = (pos - low)[:, None]
    return colours[low] * (1 - frac) + colours[low + 1] * frac


_SKIN = [(0.98, 0.84, 0.74), (0.93, 0.74, 0.60), (0.80, 0.58, 0.42), (0.60, 0.41, 0.27), (0.38, 0.25, 0.17)]
_HAIR = [(0.07, 0.06, 0.05), (0.20, 0.13, 0.08), (0.38, 0.24, 0.13), (0.56, 0.40, 0.22),
         (0.80, 0.66, 0.40), (0.55, 0.22, 0.09)]
_HAIR_WEIGHTS = [0.34, 0.26, 0.17, 0.09, 0.08, 0.06]
_EYES = [(0.30, 0.17, 0.08), (0.14, 0.09, 0.06), (0.28, 0.45, 0.66), (0.33, 0.45, 0.28), (0.45, 0.33, 0.16)]
_EYE_WEIGHTS = [0.35, 0.30, 0.15, 0.10, 0.10]
_FRAMES = [(0.06, 0.06, 0.06), (0.30, 0.18, 0.10), (0.62, 0.62, 0.66), (0.55, 0.12, 0.12)]


def _pick(table, weights, u: torch.Tensor) -> torch.Tensor:
    """Choose a colour from ``table`` with probabilities ``weights``: u [b] -> [b, 3]."""
    edges = torch.tensor(weights, device=u.device).cumsum(0)
    index = torch.searchsorted(edges / edges[-1], u.contiguous(), right=True).clamp(max=len(table) - 1)
    return torch.tensor(table, device=u.device)[index]


def face_layout(ages: torch.Tensor, genders: torch.Tensor, traits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Geometry (canonical frame) and colours of each face from its apparent age, gender and traits.

    ages: apparent ages, float [b]; genders: int [b] (0 male, 1 female); traits: {name: [b]}.
    Returns {name: [b] or [b, 3]}. Cues and the ages where they act:

    * childhood (``growth``, 0-18): big cranium and eyes, short lower face, small nose,
      mouth and jaw, rosy cheeks, thin light hair in babies;
    * puberty (``ramp`` 11-17): gender differences in jaw, brows, neck, beard;
    * adulthood: nasolabial folds (22-75), forehead lines (28-78), crow's feet (35-80),
      under-eye bags (32-85), greying (from a personal onset, ~28 years to silver, then
      white), receding hair (mostly men), thinning lips and drooping lids (40-88),
      sagging jaw and neck (45-92), age spots (50-95), growing nose and ears (30-90).

    Wrinkles follow a "skin age", the apparent age shifted by up to +-6 years per person,
    so the cues of one face do not all agree exactly.
    """
    t = traits
    a = ages.to(torch.float32)
    male = (genders == 0).to(torch.float32)
    g = growth(a)
    puberty = ramp(a, 11.0, 17.0)
    sex = (2.0 * male - 1.0) * puberty            # +1 adult man, -1 adult woman, 0 child
    skin_age = a + 12.0 * (t["skin_ageing"] - 0.5)  # some people wrinkle earlier than others
    sag = ramp(skin_age, 45.0, 92.0)
    L = {}

    # head: an upper half-ellipse (cranium) over a lower face that tapers to the chin
    L["head_w"] = _lerp(0.535, 0.475, g) * (1 + 0.08 * (t["face_width"] - 0.5)) + 0.018 * sex
    L["eye_y"] = _lerp(0.02, -0.07, g) + 0.03 * (t["eye_height"] - 0.5)
    L["head_top"] = _lerp(-0.70, -0.78, g)
    L["chin"] = _lerp(0.50, 0.64, g) + 0.06 * (t["face_length"] - 0.5) + 0.02 * sex + 0.03 * sag
    L["equator"] = L["eye_y"] - 0.03 * g
    L["jaw_power"] = _lerp(2.0, 2.35, g) + 0.55 * sex.clamp_min(0) + 0.4 * (t["jaw"] - 0.5) + 0.5 * sag
    L["jaw_taper"] = _lerp(0.02, 0.20, g) - 0.09 * sex.clamp_min(0) + 0.06 * (t["jaw"] - 0.5) - 0.05 * sag
    lower = L["chin"] - L["eye_y"]
    L["sag"] = sag

    # features, placed along the lower face so that children get a short lower face
    L["eye_x"] = 0.185 + 0.02 * (t["eye_spacing"] - 0.5)
    L["eye_rx"] = _lerp(0.098, 0.086, g) * (1 + 0.14 * (t["eye_size"] - 0.5))
    L["eye_ry"] = L["eye_rx"] * _lerp(0.62, 0.46, g) * (1 - 0.25 * ramp(skin_age, 45.0, 88.0))
    L["iris_r"] = 0.046 * (1 + 0.1 * (t["eye_size"] - 0.5))
    L["brow_y"] = L["eye_y"] - _lerp(0.15, 0.125, g) - 0.012 * (-sex).clamp_min(0)
    L["brow_thick"] = (0.012 + 0.010 * t["brow_thickness"]) * (1 + 0.35 * sex)
    L["brow_arch"] = 0.018 + 0.02 * t["brow_arch"] + 0.012 * (-sex).clamp_min(0)
    L["brow_alpha"] = _lerp(0.3, 0.95, ramp(a, 0.0, 8.0))
    L["lashes"] = 0.002 + 0.004 * (-sex).clamp_min(0)   # women's lash line is darker and thicker
    L["nose_y"] = L["eye_y"] + 0.42 * lower
    L["nose_w"] = (_lerp(0.046, 0.064, g) * (1 + 0.25 * (t["nose_size"] - 0.5)) * (1 + 0.18 * ramp(a, 30.0, 90.0))
                   + 0.006 * sex.clamp_min(0))
    L["mouth_y"] = L["eye_y"] + 0.68 * lower
    L["mouth_w"] = _lerp(0.085, 0.125, g) * (1 + 0.16 * (t["mouth_width"] - 0.5))
    L["lip"] = _lerp(0.030, 0.027, g) * (0.75 + 0.5 * t["lip_fullness"]) * (1 - 0.45 * ramp(skin_age, 40.0, 85.0))
    L["mouth_droop"] = 0.5 * ramp(skin_age, 50.0, 90.0)
    L["ear_y"] = L["eye_y"] + 0.10 * lower + 0.02
    L["ear_ry"] = _lerp(0.10, 0.13, g) * (1 + 0.12 * (t["ear_size"] - 0.5)) * (1 + 0.15 * ramp(a, 30.0, 90.0))
    L["neck_w"] = _lerp(0.16, 0.19, g) + 0.035 * sex.clamp_min(0)
    L["shoulder_y"] = L["chin"] + _lerp(0.10, 0.17, g)
    L["shoulders"] = _lerp(0.70, 0.95, g) + 0.06 * sex.clamp_min(0)

    # hair: length is mostly a gender cue, never a perfect one
    flip_f = (t["hair_flip"] < 0.2).float()   # 20 % of women with short hair
    flip_m = (t["hair_flip"] < 0.12).float()  # 12 % of men with long hair
    u = t["hair_length"]
    length_f = _lerp(0.35 + 0.65 * u, 0.05 + 0.25 * u, flip_f)
    length_m = _lerp(0.2 * u, 0.3 + 0.5 * u, flip_m)
    L["hair_len"] = _lerp(length_f, length_m, male) * ramp(a, 0.0, 5.0)
    L["long_hair"] = ramp(L["hair_len"], 0.2, 0.5)
    bald_share = male * ((t["bald"] - 0.3) / 0.7).clamp(0, 1) ** 1.2 + (1 - male) * 0.12 * t["bald"]
    bald_start = 22.0 + 28.0 * t["bald_onset"]
    L["bald"] = bald_share * ramp(a, bald_start, bald_start + 35.0)
    density = _lerp(0.6, 1.0, ramp(a, 0.0, 3.0))
    L["hair_density"] = density * (1 - 0.3 * L["bald"])
    L["hair_thick"] = (0.03 + 0.06 * t["hair_volume"]) * _lerp(0.4, 1.0, ramp(a, 0.0, 4.0)) * (1 - 0.85 * L["bald"])
    style = t["hair_style"]
    fringe = (style < 0.3).float()             # straight fringe; otherwise a side parting or swept back
    L["hairline_power"] = 2.0 + 2.5 * fringe
    L["hairline_tilt"] = 0.06 * ((style > 0.3) & (style < 0.65)).float() * torch.where(style > 0.47, 1.0, -1.0)
    L["hairline"] = (L["brow_y"] - _lerp(0.30, 0.27, g) + 0.19 * fringe - 0.08 * (style > 0.8).float()
                     - 0.55 * L["bald"])
    L["temple_y"] = L["eye_y"] - 0.05 - 0.10 * L["bald"]

    # colours
    hair = _pick(_HAIR, _HAIR_WEIGHTS, t["hair_colour"]) * (0.85 + 0.3 * t["hair_shade"])[:, None]
    blond = torch.tensor(_HAIR[4], device=a.device)
    hair = _lerp(hair, blond, (0.35 * (1 - g) * (1 - t["skin_tone"]))[:, None])  # children fairer
    grey_start = 32.0 + 20.0 * t["grey_onset"]
    L["grey"] = ramp(a, grey_start, grey_start + 28.0)
    silver = torch.tensor([0.70, 0.70, 0.72], device=a.device)
    white = torch.tensor([0.90, 0.90, 0.91], device=a.device)
    silver = _lerp(silver, white, ramp(a, grey_start + 28.0, grey_start + 55.0)[:, None])   # then white
    L["hair_rgb"] = _lerp(hair, silver, L["grey"][:, None]).clamp(0, 1)
    L["brow_rgb"] = _lerp(hair * 0.7, silver * 0.85, 0.6 * L["grey"][:, None])
    skin = _palette(_SKIN, t["skin_tone"] ** 1.3)
    warm = torch.stack([0.03 * (t["skin_warmth"] - 0.5), torch.zeros_like(a), -0.03 * (t["skin_warmth"] - 0.5)], 1)
    baby = torch.stack([0.02 * (1 - g), -0.02 * (1 - g), -0.01 * (1 - g)], 1)
    old = torch.stack([-0.02 * sag, -0.01 * sag, 0.0 * sag], 1)
    L["skin_rgb"] = (skin + warm + baby + old).clamp(0, 1)
    lip = _lerp(L["skin_rgb"], torch.tensor([0.80, 0.36, 0.38], device=a.device), 0.35)
    lipstick = (1 - male) * puberty * (t["lipstick"] < 0.35).float()
    L["lip_rgb"] = _lerp(lip, torch.tensor([0.72, 0.12, 0.18], device=a.device), (0.6 * lipstick)[:, None])
    L["eye_rgb"] = _pick(_EYES, _EYE_WEIGHTS, t["eye_colour"])
    L["frame_rgb"] = _pick(_FRAMES, [1.0] * len(_FRAMES), t["glasses_colour"])
    L["blush"] = 0.28 * (1 - g) + 0.08 * (1 - male) * puberty

    # signs of ageing, 0 -> 1
    L["forehead_lines"] = ramp(skin_age, 28.0, 78.0)
    L["crows_feet"] = ramp(skin_age, 35.0, 80.0)
    L["eye_bags"] = ramp(skin_age, 32.0, 85.0)
    L["nasolabial"] = ramp(skin_age, 22.0, 75.0)
    L["marionette"] = ramp(skin_age, 50.0, 90.0)
    L["spots"] = ramp(a, 50.0, 95.0)
    L["wrinkle_phase"] = 2 * math.pi * t["wrinkle_phase"]
    beard = ((t["beard"] - 0.55) / 0.45).clamp(0, 1)
    L["beard"] = male * beard.sqrt() * ramp(a, 15.0, 22.0)
    L["beard_full"] = (beard > 0.6).float()
    L["glasses_affinity"] = (0.3 + 1.4 * t["glasses"]) * (0.4 * ramp(a, 3.0, 14.0) + ramp(a, 35.0, 65.0))
    return L


# ----------------------------------------------------------------------------------
# shapes: signed distances, negative inside
# ----------------------------------------------------------------------------------


def _sd_ellipse(x: torch.Tensor, y: torch.Tensor, rx, ry) -> torch.Tensor:
    """Approximate signed distance to an ellipse with radii rx, ry: (k0 - 1) k0 / k1.

    k0 = |p / r| is 1 on the outline and k1 / k0 approximates its gradient's length, so
    this is exact on circles and on the axes; a tiny eps keeps the centre finite.
    """
    eps = 1e-6
    k0 = torch.sqrt((x / rx) ** 2 + (y / ry) ** 2)
    k1 = torch.sqrt((x / (rx * rx)) ** 2 + (y / (ry * ry)) ** 2)
    return (k0 - 1.0) * (k0 + eps) / (k1 + eps * 0.5 * (1.0 / rx + 1.0 / ry))


def _sd_segment(x, y, ax, ay, bx, by, half_width) -> torch.Tensor:
    """Signed distance to a segment from (ax, ay) to (bx, by) thickened by ``half_width``."""
    dx, dy = bx - ax, by - ay
    h = (((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0)
    return torch.sqrt((x - ax - h * dx) ** 2 + (y - ay - h * dy) ** 2) - half_width


def _sd_round_box(x, y, half_w, half_h, radius) -> torch.Tensor:
    """Signed distance to a box centred at the origin with rounded corners of ``radius``."""
    qx = x.abs() - half_w + radius
    qy = y.abs() - half_h + radius
    outside = torch.sqrt(qx.clamp_min(0) ** 2 + qy.clamp_min(0) ** 2)
    return outside + torch.maximum(qx, qy).clamp_max(0) - radius


def _cover(d: torch.Tensor, px: float) -> torch.Tensor:
    """eq. R1: coverage of a pixel of width px by the shape with signed distance d."""
    return (0.5 - d / px).clamp_(0.0, 1.0)


def _soft(d: torch.Tensor, width) -> torch.Tensor:
    """A wide soft edge (shading, blush): 1 deep inside, 0 outside, linear over ``width``."""
    return (-d / width).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------------
# the canvas, and windows on it
# ----------------------------------------------------------------------------------

_ZOOM, _LIFT = 0.86, 0.04  # crop of the canonical frame, so that the face fills the photo


def _grid(size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres in [-1, 1] (grid_sample's align_corners=False convention): X [1, 1, W], Y [1, H, 1].

    Kept separable: a term in x alone or y alone costs a row or a column, and only
    terms that mix them cost a whole image [b, H, W] (broadcasting makes those).
    """
    c = (torch.arange(size, device=device, dtype=torch.float32) * 2 + 1) / size - 1
    return c.view(1, 1, size), c.view(1, size, 1)


class _Frame:
    """Canonical coordinates and the canvas under them, for the whole image or a window.

    X: [1, 1, w] and Y: [1, h, 1] (see ``_grid``); xf = X - shift (features slide
    sideways when the head turns) and xs = |xf| for left-right symmetric parts: [b, 1, w].
    rgb [b, 3, h, w] and alpha [b, 1, h, w] are premultiplied colour and coverage; a
    window's are views into the full canvas, so drawing in a window draws on the photo.
    ``maps`` holds other per-pixel tensors [b, h, w] (the head's distance, grain) that
    windows cut too.
    """

    def __init__(self, X, Y, xf, rgb, alpha, px, maps):
        self.X, self.Y, self.xf, self.xs = X, Y, xf, xf.abs()
        self.rgb, self.alpha, self.px, self.maps = rgb, alpha, px, maps
        self.line = max(0.006, 0.45 * px)  # half-width of wrinkle lines, at least ~1 pixel wide

    @classmethod
    def blank(cls, b: int, size: int, shift: torch.Tensor, maps: dict) -> _Frame:
        """A transparent canvas: shift [b, 1, 1], maps {name: [b, size, size]}."""
        X, Y = _grid(size, shift.device)
        X, Y = X * _ZOOM, Y * _ZOOM + _LIFT   # the canonical frame shows a little less than [-1, 1]
        rgb = torch.zeros(b, 3, size, size, device=shift.device)
        alpha = torch.zeros(b, 1, size, size, device=shift.device)
        return cls(X, Y, X - shift, rgb, alpha, 2.0 * _ZOOM / size, maps)

    def window(self, top, bottom, half_width=None) -> _Frame:
        """The rows with top <= Y <= bottom (and columns with |X| <= half_width), plus 2 pixels.

        Parts are drawn only in their window: a shape's coverage (eq. R1) is exactly 0
        beyond half a pixel, so the picture is the same as drawing everywhere, only faster.
        """
        def span(coords, low, high):
            low = max(int(torch.searchsorted(coords, torch.tensor(float(low))).item()) - 2, 0)
            return slice(low, int(torch.searchsorted(coords, torch.tensor(float(high))).item()) + 2)

        rows = span(self.Y.view(-1).cpu(), top, bottom)
        cols = slice(None) if half_width is None else span(self.X.view(-1).cpu(), -half_width, half_width)
        maps = {k: v[:, rows, cols] for k, v in self.maps.items()}
        return _Frame(self.X[:, :, cols], self.Y[:, rows, :], self.xf[:, :, cols],
                      self.rgb[:, :, rows, cols], self.alpha[:, :, rows, cols], self.px, maps)

    def over(self, coverage: torch.Tensor, colour) -> None:
        """eq. R2: coverage [b, h, w]; colour [b, 3], [b, 3, h, w] or a constant RGB triple."""
        a = coverage.unsqueeze(1)
        if not isinstance(colour, torch.Tensor):
            colour = torch.tensor(colour, device=a.device).view(1, 3)
        if colour.dim() == 2:
            colour = colour[:, :, None, None]
        self.rgb.lerp_(colour.expand_as(self.rgb), a)    # C + alpha (c - C)
        self.alpha.lerp_(torch.ones_like(a), a)

    def darken(self, amount: torch.Tensor, tint=None) -> None:
        """Multiply colour by (1 - amount * tint): wrinkles, shadows. amount [b, h, w]."""
        a = amount.unsqueeze(1)
        if tint is not None:
            a = a * torch.tensor(tint, device=a.device).view(1, 3, 1, 1)
        self.rgb.mul_(1.0 - a)


def _lo(t: torch.Tensor) -> float:
    return float(t.min())


def _hi(t: torch.Tensor) -> float:
    return float(t.max())


# ----------------------------------------------------------------------------------
# the face, back to front
# ----------------------------------------------------------------------------------


def _hair_silhouette(f: _Frame, L: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A cap over the cranium and, for long hair, a rounded fall that spreads as it drops.

    Returns the silhouette's distance [b, H, W], the hair colour with strands and a darker
    rim [b, 3, H, W], and where the side locks end (y) [b, 1, 1].
    """
    W, eq, top, th = L["head_w"], L["equator"], L["head_top"], L["hair_thick"]
    X, Y = f.X, f.Y
    long = L["long_hair"]
    lock_end = _lerp(L["eye_y"] + 0.10, eq + 0.2 + 0.9 * L["hair_len"], long)
    y_cap = Y - eq + 0.05   # a half-ellipse over the cranium, closing by the ears (short hair)
    d_cap = _sd_ellipse(X, y_cap, W + 0.6 * th + 0.01,
                        torch.where(y_cap < 0, eq - top + th - 0.05, 0.16 + 0.5 * long))   # or running into the fall
    fall_w = _lerp(0.97 * W, W + 0.6 * th + 0.02, long)
    flare = 1.0 + 0.25 * long * ((Y - eq) / (lock_end - eq)).clamp(0.0, 1.0)
    d_fall = _sd_round_box(X / flare, Y - 0.5 * (eq - 0.1 + lock_end), fall_w, 0.5 * (lock_end - eq + 0.1), 0.2)
    d_hair = torch.minimum(d_cap, d_fall)
    strands = 1.0 + 0.05 * torch.sin(45.0 * X / (Y - top + 0.3).abs().clamp_min(0.05))   # rays from above the crown
    strands = strands - 0.25 * (1.0 + d_hair / 0.07).clamp(0.0, 1.0)   # darker at the outline
    return d_hair, L["hair_rgb"][:, :, None, None] * strands.unsqueeze(1), lock_end


def _clothes(f: _Frame, L: dict, clothes: torch.Tensor) -> None:
    """Clothes on the shoulders: the top of a wide ellipse."""
    X, Y = f.X, f.Y
    f.over(_cover(_sd_ellipse(X, Y - L["shoulder_y"] - 0.5, L["shoulders"], 0.5), f.px), clothes)


def _neck(f: _Frame, L: dict) -> None:
    """The neck, with the chin's shadow on it and, late in life, folds."""
    X, Y = f.X, f.Y
    neck_end = L["shoulder_y"] + 0.06
    d = torch.where(Y < neck_end, X.abs() - L["neck_w"], torch.sqrt(X ** 2 + (Y - neck_end) ** 2) - L["neck_w"])
    neck = _cover(torch.maximum(d, L["equator"] - Y), f.px)
    f.over(neck, L["skin_rgb"] * 0.9)
    shadow = (1.0 - (Y - L["chin"] + 0.02) / 0.14).clamp(0.0, 1.0) * (Y > L["chin"] - 0.1)
    f.darken(0.30 * shadow * neck)
    for k in range(2):   # folds of an old neck
        y_fold = L["chin"] + 0.09 + 0.07 * k + 0.01 * torch.sin(6 * X)
        fold = _cover((Y - y_fold).abs() - f.line, f.px) * (1 - X.abs() / L["neck_w"]).clamp(0, 1)
        f.darken(0.3 * L["sag"] * fold * neck)


def _ears(f: _Frame, L: dict, yaw: torch.Tensor) -> None:
    """Ears beside the head; they slide against a head turn, so one hides behind the head."""
    ex = (f.X + 0.05 * yaw).abs() - (L["head_w"] * 0.96 + 0.005)
    rx = 0.55 * L["ear_ry"]
    f.over(_cover(_sd_ellipse(ex, f.Y - L["ear_y"], rx, L["ear_ry"]), f.px), L["skin_rgb"] * 0.93)
    f.darken(0.25 * _cover(_sd_ellipse(ex - 0.012, f.Y - L["ear_y"], 0.45 * rx, 0.6 * L["ear_ry"]), f.px))


def _head(f: _Frame, L: dict) -> torch.Tensor:
    """The cranium (half-ellipse above the equator) on a lower face that tapers to the chin.

    Below the equator, with t = (y - equator) / (chin - equator), the outline is
    (x / (W (1 - taper t^2)))^2 + t^2 (1 - s (1 - t)) = 1, with s = jaw_power - 2:
    s = 0 is an ellipse, s = 1 the curve t^3 (a squarer jaw), larger s squarer still.
    Returns the head's signed distance [b, H, W].
    """
    X, Y, W, eq = f.X, f.Y, L["head_w"], L["equator"]
    t_low = ((Y - eq) / (L["chin"] - eq)).clamp_min(0.0)
    t2 = t_low * t_low
    half = W * (1.0 - L["jaw_taper"] * t2)
    rho_low = torch.sqrt((X / half) ** 2 + (t2 * (1.0 - (L["jaw_power"] - 2.0) * (1.0 - t_low))).clamp_min(0.0))
    rho_up = torch.sqrt((X / W) ** 2 + ((Y - eq) / (eq - L["head_top"])) ** 2)
    d_head = (torch.where(Y < eq, rho_up, rho_low) - 1.0) * 0.9 * W
    rim = (1.0 + d_head / 0.16).clamp(0.0, 1.0) ** 2   # darker towards the outline: roundness
    jowl = L["sag"] * ramp(t_low, 0.35, 0.8) * (1.0 + d_head / 0.06).clamp(0.0, 1.0)
    shade = 1.0 - 0.20 * rim - 0.20 * jowl
    f.over(_cover(d_head, f.px), L["skin_rgb"][:, :, None, None] * shade.unsqueeze(1))
    return d_head


def _age_spots(f: _Frame, L: dict, seed: int, identities: torch.Tensor) -> None:
    """Brown spots: each cell of a coarse grid may hold one, placed by a hash of (person, cell).

    A spot appears once the person's age-spot level passes the spot's own threshold,
    so spots come one by one, and a person keeps the same spots when older.
    """
    old = (L["spots"].view(-1) > 0).nonzero().view(-1)   # only faces old enough to have any
    if old.numel() == 0:
        return
    if old.numel() < identities.numel():
        part = _Frame(f.X, f.Y, f.xf[old], f.rgb[old], f.alpha[old], f.px, {"inside": f.maps["inside"][old]})
        _age_spots(part, {"spots": L["spots"][old]}, seed, identities[old])
        f.rgb[old] = part.rgb
        return
    G, cell = _SPOT_GRID, 2.0 / _SPOT_GRID
    keys = identities[:, None] * (G * G) + torch.arange(G * G, device=identities.device)[None, :]
    cx, cy, size, threshold = (hash_uniform(seed, keys, 200 + k) for k in range(4))
    col = ((f.X[0] + 1.0) / cell).floor().long().clamp(0, G - 1)   # [1, w]
    row = ((f.Y[0] + 1.0) / cell).floor().long().clamp(0, G - 1)   # [h, 1]
    which = row * G + col                                        # [h, w] cell of each pixel
    margin = 0.03
    centre_x = (-1.0 + cell * (col + 0.5)) + (cx[:, which] - 0.5) * (cell - 2 * margin)
    centre_y = (-1.0 + cell * (row + 0.5)) + (cy[:, which] - 0.5) * (cell - 2 * margin)
    r = 0.012 + 0.022 * size[:, which]
    d = _sd_ellipse(f.X - centre_x, f.Y - centre_y, r, 0.75 * r)
    level = ((L["spots"] - 2.5 * threshold[:, which]) / 0.15).clamp(0.0, 1.0)
    f.darken((0.18 + 0.2 * size[:, which]) * _soft(d, 1.5 * f.px) * level * f.maps["inside"], tint=(0.5, 0.75, 1.0))


def _forehead_lines(f: _Frame, L: dict) -> None:
    """Three wavy horizontal lines above the brows, tapering towards the temples."""
    for k in range(3):
        y_k = L["brow_y"] - 0.075 - 0.045 * k + 0.006 * torch.sin(9.0 * f.xf + L["wrinkle_phase"] + k)
        taper = (1.0 - (f.xf / (0.20 + 0.03 * k)) ** 2).clamp(0.0, 1.0)
        line = _cover((f.Y - y_k).abs() - f.line, f.px)
        f.darken(0.38 * L["forehead_lines"] * taper * line * f.maps["inside"])


def _eye_wrinkles(f: _Frame, L: dict) -> None:
    """Crow's feet (three rays from the outer corner) and under-eye bags (an arc and a shadow)."""
    xs, Y, inside = f.xs, f.Y, f.maps["inside"]
    corner = L["eye_x"] + L["eye_rx"] + 0.012
    crow = None
    for angle in (-0.5, 0.0, 0.45):
        length = 0.06 - 0.01 * abs(angle)
        d = _sd_segment(xs, Y, corner, L["eye_y"], corner + length * math.cos(angle),
                        L["eye_y"] + length * math.sin(angle), f.line)
        crow = d if crow is None else torch.minimum(crow, d)
    f.darken(0.40 * L["crows_feet"] * _cover(crow, f.px) * inside)
    lid = L["eye_y"] + L["eye_ry"]
    u = (xs - L["eye_x"]) / (1.1 * L["eye_rx"])
    bag = lid + 0.035 + 0.018 * (1.0 - u ** 2)
    width = (1.0 - u ** 2).clamp(0.0, 1.0)
    f.darken(0.40 * L["eye_bags"] * width * _cover((Y - bag).abs() - f.line, f.px) * inside)
    pouch = ((Y - lid) / (bag - lid)).clamp(0, 1) * (Y < bag)
    f.darken(0.12 * L["eye_bags"] * width * pouch * inside, tint=(0.8, 1.0, 0.9))


def _lower_face_skin(f: _Frame, L: dict) -> None:
    """Rosy cheeks, nasolabial folds (nose wing to mouth corner) and marionette lines."""
    xs, Y, inside = f.xs, f.Y, f.maps["inside"]
    cheek = _sd_ellipse(xs - L["eye_x"] - 0.02, Y - L["nose_y"] + 0.02, 0.085, 0.06)
    f.over(L["blush"] * _soft(cheek, 0.05) * inside, (0.92, 0.45, 0.45))
    y0, y1 = L["nose_y"] - 0.03, L["mouth_y"] + 0.035
    t = ((Y - y0) / (y1 - y0)).clamp(0.0, 1.0)
    x0, x1 = L["nose_w"] + 0.03, L["mouth_w"] + 0.02
    d = torch.maximum((xs - x0 - (x1 - x0) * t - 0.025 * torch.sin(math.pi * t)).abs() - f.line,
                      torch.maximum(y0 - Y, Y - y1))
    f.darken(0.40 * L["nasolabial"] * _cover(d, f.px) * inside)
    d = _sd_segment(xs, Y, L["mouth_w"] + 0.005, L["mouth_y"] + 0.02, L["mouth_w"] + 0.012, L["mouth_y"] + 0.08,
                    f.line)
    f.darken(0.30 * L["marionette"] * _cover(d, f.px) * inside)


def _beard(f: _Frame, L: dict) -> None:
    """Stubble or a full beard below a line from the cheeks to just under the nose."""
    xs, Y = f.xs, f.Y
    top = L["nose_y"] + 0.035 - (L["nose_y"] - L["ear_y"] - 0.06) * (xs / L["head_w"]).clamp(0, 1) ** 2
    lips = _sd_ellipse(f.xf, Y - L["mouth_y"], L["mouth_w"] + 0.01, 1.6 * L["lip"] + 0.008)
    region = ((Y - top) / 0.05).clamp(0, 1) * _cover(f.maps["d_head"] - 0.02 * L["beard_full"], f.px)
    grain = (0.9 + 0.1 * f.maps["grain"]).clamp(0, 1)
    strength = L["beard"] * (0.4 + 0.45 * L["beard_full"])
    f.over(strength * region * (1 - _cover(lips, f.px)) * grain, L["hair_rgb"] * 0.75)


def _front_hair(f: _Frame, L: dict, d_hair: torch.Tensor, hair_rgb: torch.Tensor, lock_end: torch.Tensor) -> None:
    """The hair silhouette minus the face window: skin below the hairline, and for long
    hair only inside a band along the face's outline (locks frame the face).

    The hairline runs from its centre height down to the temples as |x|^power (a high
    power is a straight fringe), tilts for a side parting and recedes at the temples
    and overall with baldness.
    """
    W = L["head_w"]
    u = (f.xs / (0.88 * W)).clamp_max(1.5)
    hairline = (L["hairline"] + (L["temple_y"] - L["hairline"]) * u ** L["hairline_power"]
                + L["hairline_tilt"] * f.xf / W - 0.12 * L["bald"] * torch.exp(-(((f.xs - 0.22) / 0.09) ** 2)))
    window = torch.maximum(hairline - f.Y, torch.minimum(f.maps["d_head"] + 0.035 * L["long_hair"], lock_end - f.Y))
    f.over(_cover(torch.maximum(d_hair, -window), f.px) * L["hair_density"], hair_rgb)


def _eyes_and_brows(f: _Frame, L: dict, gaze: torch.Tensor) -> None:
    """Eye whites, irises, pupils, a catch-light, lashes on the upper lid, a lid crease, brows."""
    xs, Y = f.xs, f.Y
    ey = Y - L["eye_y"]
    d_eye = _sd_ellipse(xs - L["eye_x"], ey, L["eye_rx"], L["eye_ry"])
    eye = _cover(d_eye, f.px)
    f.over(eye, (0.94, 0.93, 0.90))
    iris_x = xs - L["eye_x"] - gaze * torch.sign(f.xf)
    d_iris = torch.sqrt(iris_x ** 2 + ey ** 2)
    f.over(_cover(d_iris - L["iris_r"], f.px) * eye, L["eye_rgb"])
    f.over(_cover(d_iris - 0.45 * L["iris_r"], f.px) * eye, (0.03, 0.03, 0.03))
    glint = torch.sqrt(iris_x ** 2 + (ey + 0.4 * L["iris_r"]) ** 2) - 0.25 * L["iris_r"]
    f.over(0.8 * _cover(glint, f.px) * eye, (1.0, 1.0, 1.0))
    lash = _cover(d_eye.abs() - 0.5 * f.line - L["lashes"], f.px) * (ey < 0.2 * L["eye_ry"])
    f.over(0.85 * lash, (0.08, 0.08, 0.08))
    s = (xs - L["eye_x"]) / L["eye_rx"]
    crease = L["eye_y"] - L["eye_ry"] - 0.022 + 0.02 * s ** 2
    f.darken(0.22 * (1.0 - (s / 1.1) ** 2).clamp(0.0, 1.0) * _cover((Y - crease).abs() - 0.7 * f.line, f.px))
    # brows: an arch, thick at the inner end and thinner outside
    s = (xs - L["eye_x"] - 0.005) / (1.25 * L["eye_rx"])
    arch = L["brow_y"] - L["brow_arch"] * (1.0 - s ** 2) + 0.01 * s
    thick = L["brow_thick"] * (1.0 - 0.45 * s.clamp(0.0, 1.0))
    d = torch.maximum((Y - arch).abs() - thick, (s.abs() - 1.0) * 1.25 * L["eye_rx"])
    f.over(_cover(d, f.px) * L["brow_alpha"], L["brow_rgb"])


def _nose_and_mouth(f: _Frame, L: dict, smile: torch.Tensor) -> None:
    """Nose: side shadows, nostrils, a shadow under the tip and a highlight on it.
    Mouth: lips bent by the smile (corners up) and by age (corners down)."""
    xs, xf, Y = f.xs, f.xf, f.Y
    ny, nw = L["nose_y"], L["nose_w"]
    f.darken(0.16 * _soft(_sd_segment(xs, Y, 0.45 * nw, L["eye_y"] + 0.05, 0.75 * nw, ny - 0.03, 0.008), 0.012))
    f.darken(0.22 * _soft(_sd_ellipse(xf, Y - ny - 0.012, nw, 0.022), 0.015))
    f.darken(0.55 * _cover(_sd_ellipse(xs - 0.55 * nw, Y - ny, 0.2 * nw + 0.008, 0.011), f.px))
    f.over(0.25 * _soft(_sd_ellipse(xf, Y - ny + 0.03, 0.35 * nw, 0.025), 0.02), L["skin_rgb"] * 1.1 + 0.05)
    bend = 0.03 * (smile - L["mouth_droop"])
    y_m = L["mouth_y"] - bend * (xf / L["mouth_w"]) ** 2
    f.over(_cover(_sd_ellipse(xf, Y - y_m - 0.15 * L["lip"], L["mouth_w"], 1.15 * L["lip"] + 0.002), f.px),
           L["lip_rgb"])
    d = torch.maximum((Y - y_m).abs() - 0.5 * f.line - 0.002, xf.abs() - 1.02 * L["mouth_w"])
    f.over(0.85 * _cover(d, f.px), (0.30, 0.13, 0.12))


def _glasses(f: _Frame, L: dict, wear: torch.Tensor) -> None:
    """Two rims, a bridge, the arms towards the ears, and a faint sheen on the lenses."""
    xs, Y = f.xs, f.Y
    rx, ry = 1.45 * L["eye_rx"] + 0.025, 1.1 * L["eye_rx"] + 0.02
    lens = _sd_ellipse(xs - L["eye_x"], Y - L["eye_y"] + 0.005, rx, ry)
    bridge = torch.maximum((Y - L["eye_y"] + 0.02).abs() - 0.007, xs - L["eye_x"] + rx - 0.01)
    arm = torch.maximum((Y - L["eye_y"] + 0.015).abs() - 0.007,
                        torch.maximum(L["eye_x"] + rx - 0.01 - xs, xs - L["head_w"]))
    frame = torch.minimum(torch.minimum(lens.abs() - 0.009, bridge), arm)
    f.over(0.12 * wear * _cover(lens, f.px), (1.0, 1.0, 1.0))
    f.over(wear * _cover(frame, f.px), L["frame_rgb"])


def draw_faces(layout: dict[str, torch.Tensor], nuis: dict[str, torch.Tensor], seed: int, identities: torch.Tensor,
               size: int, grain: torch.Tensor) -> torch.Tensor:
    """Draw upright faces in the canonical frame, back to front.

    layout: from ``face_layout`` ([b] or [b, 3]); nuis: from ``nuisances_from_uniforms``;
    identities [b] place the age spots; grain [b, H, W] (standard normal) textures beards.
    Small parts are drawn in windows around them (``_Frame.window``), which only saves time.
    Returns premultiplied RGBA [b, 4, H, W].
    """
    L = {k: (v.view(-1, 1, 1) if v.dim() == 1 else v) for k, v in layout.items()}
    b = identities.shape[0]
    yaw = nuis["yaw"].view(-1, 1, 1)
    f = _Frame.blank(b, size, 0.10 * yaw, {"grain": grain})
    margin = 0.08 + 0.10 * float(yaw.abs().max())   # room for sliding features and soft edges

    _clothes(f.window(_lo(L["shoulder_y"]), 1.0), L, nuis["clothes_rgb"])
    d_hair, hair_rgb, lock_end = _hair_silhouette(f, L)
    f.over(_cover(d_hair, f.px) * L["long_hair"], hair_rgb * 0.75)   # long hair falls behind the neck
    _neck(f.window(_lo(L["equator"]), 1.0), L)
    _ears(f.window(_lo(L["ear_y"] - L["ear_ry"]), _hi(L["ear_y"] + L["ear_ry"])), L, yaw)
    d_head = _head(f, L)
    f.maps["d_head"] = d_head
    f.maps["inside"] = _cover(d_head, f.px) * (d_head < -0.5 * f.px)

    # skin marks, under the front hair
    _age_spots(f.window(_lo(L["head_top"]), _hi(L["chin"])), L, seed, identities)
    _forehead_lines(f.window(_lo(L["brow_y"]) - 0.19, _hi(L["brow_y"]) - 0.06, 0.3 + margin), L)
    eyes = f.window(_lo(L["brow_y"] - L["brow_arch"] - L["brow_thick"]) - 0.02,     # brows ...
                    _hi(L["eye_y"] + torch.maximum(L["eye_ry"] + 0.075, 1.1 * L["eye_rx"] + 0.03)),  # ... to glasses
                    _hi(L["head_w"]) + margin)
    _eye_wrinkles(eyes, L)
    lower = f.window(_lo(L["eye_y"]) + 0.02, _hi(L["chin"]) + 0.05, _hi(L["head_w"]) + margin)
    _lower_face_skin(lower, L)
    _beard(lower, L)
    _front_hair(f, L, d_hair, hair_rgb, lock_end)

    # features
    _eyes_and_brows(eyes, L, nuis["gaze"].view(-1, 1, 1))
    _nose_and_mouth(lower, L, nuis["smile"].view(-1, 1, 1))
    wear = (nuis["glasses_draw"] < nuis["glasses_rate"] * layout["glasses_affinity"]).float().view(-1, 1, 1)
    if bool(wear.any()):
        _glasses(eyes, L, wear)
    return torch.cat([f.rgb, f.alpha], 1)


# ----------------------------------------------------------------------------------
# photograph: pose, background, light, blur, noise
# ----------------------------------------------------------------------------------


def pose(rgba: torch.Tensor, nuis: dict[str, torch.Tensor]) -> torch.Tensor:
    """Rotate, scale, shift and squash (yaw) upright faces with one bilinear warp.

    A canonical point p maps to t + s R(phi) diag(q, 1) p in the photo, so each photo
    pixel samples the canonical image at  diag(1/q, 1) R(-phi) (p_photo - t) / s.
    rgba: [b, 4, H, W] premultiplied -> [b, 4, H, W].
    """
    phi, s = nuis["rotation"], nuis["scale"]
    q = 1.0 - 0.12 * nuis["yaw"].abs()
    cos, sin = torch.cos(phi), torch.sin(phi)
    A = torch.stack([torch.stack([cos / q, sin / q], 1), torch.stack([-sin, cos], 1)], 1) / s[:, None, None]
    t = nuis["shift"]
    theta = torch.cat([A, -(A @ t[:, :, None])], 2)
    grid = F.affine_grid(theta, list(rgba.shape), align_corners=False)
    return F.grid_sample(rgba, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def background(nuis: dict[str, torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A coloured backdrop with a vertical gradient, blotches and stripes.

    Returns its colour [b, 3] and its brightness pattern [b, 1, H, W]; their product is the picture.
    """
    X, Y = _grid(size, nuis["bg_rgb"].device)
    field = F.interpolate(nuis["bg_field"], size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    angle = nuis["stripe_angle"].view(-1, 1, 1)
    stripes = torch.sin(14.0 * (X * torch.cos(angle) + Y * torch.sin(angle)) + nuis["stripe_phase"].view(-1, 1, 1))
    shade = (1.0 + nuis["bg_gradient"].view(-1, 1, 1) * Y + nuis["bg_texture"].view(-1, 1, 1) * (2 * field - 1)
             + nuis["stripes"].view(-1, 1, 1) * stripes)
    return nuis["bg_rgb"], shade.unsqueeze(1)


def _replicate(img: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Pad ``dim`` with ``radius`` copies of its first and last entries (``F.pad``'s "replicate", faster)."""
    shape = list(img.shape)
    shape[dim] = radius
    edges = img.narrow(dim, 0, 1).expand(shape), img.narrow(dim, img.shape[dim] - 1, 1).expand(shape)
    return torch.cat([edges[0], img, edges[1]], dim)


def _blur(img: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma (pixels) as a sum of shifted copies.

    img [b, c, H, W]; sigma [b] -> [b, c, H, W]. Only elementwise sums, so the result
    does not depend on the number of threads.
    """
    if radius == 0:
        return img
    k = torch.arange(-radius, radius + 1, device=img.device, dtype=img.dtype)
    w = torch.exp(-0.5 * (k[None, :] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    w = (w / w.sum(1, keepdim=True)).view(-1, 1, 1, 2 * radius + 1)
    size_h, size_w = img.shape[-2:]
    padded = _replicate(img, radius, -1)
    out = w[..., 0:1] * padded[..., 0:size_w]
    for i in range(1, 2 * radius + 1):
        out.addcmul_(w[..., i:i + 1], padded[..., i:i + size_w])
    padded = _replicate(out, radius, -2)
    w = w.view(-1, 1, 2 * radius + 1, 1)
    out = w[:, :, 0:1] * padded[:, :, 0:size_h]
    for i in range(1, 2 * radius + 1):
        out.addcmul_(w[:, :, i:i + 1], padded[:, :, i:i + size_h])
    return out


def photograph(rgba: torch.Tensor, nuis: dict[str, torch.Tensor], cfg: Difficulty, noise: torch.Tensor,
               posed: bool) -> torch.Tensor:
    """Pose the faces, lay them over a background, light, blur, add noise, quantise.

    rgba: [b, 4, H, W] premultiplied; noise: standard normal [b, 3, H, W] -> uint8 [b, 3, H, W].
    """
    size = rgba.shape[-1]
    if posed:
        rgba = pose(rgba, nuis)
    colour, shade = background(nuis, size)
    img = torch.addcmul(rgba[:, :3], colour[:, :, None, None], shade * (1.0 - rgba[:, 3:]))   # eq. R2, last layer
    X, Y = _grid(size, rgba.device)
    angle = nuis["light_angle"].view(-1, 1, 1)
    light = 1.0 + nuis["light_strength"].view(-1, 1, 1) * (X * torch.cos(angle) + Y * torch.sin(angle))
    img.mul_(light.unsqueeze(1))
    scale = size / 64.0  # blur is given in pixels of a 64-pixel image
    img = _blur(img, nuis["blur"] * scale, int(math.ceil(2.5 * cfg.blur[1] * scale)))
    img.addcmul_(nuis["noise"].view(-1, 1, 1, 1), noise)
    return img.clamp_(0.0, 1.0).mul_(255.0).add_(0.5).floor_().to(torch.uint8)


def render(ages: torch.Tensor, genders: torch.Tensor, identities: torch.Tensor, nuisance_uniforms: torch.Tensor,
           difficulty: str, seed: int, size: int, noise: torch.Tensor) -> torch.Tensor:
    """Render a batch of photos in one go.

    ages: apparent ages, float [b]; genders, identities: int64 [b];
    nuisance_uniforms: [b, NUM_NUISANCE_UNIFORMS]; noise: standard normal [b, 4, size, size],
    the pixel noise (channels 0-2) and the stubble grain (channel 3).
    Returns uint8 [b, 3, size, size].
    """
    cfg = DIFFICULTIES[difficulty]
    nuis = nuisances_from_uniforms(nuisance_uniforms, cfg)
    layout = face_layout(ages, genders, identity_traits(seed, identities))
    rgba = draw_faces(layout, nuis, seed, identities, size, noise[:, 3])
    posed = cfg.rotation_deg > 0 or cfg.yaw > 0 or cfg.shift > 0 or cfg.scale != (1.0, 1.0)
    return photograph(rgba, nuis, cfg, noise[:, :3], posed)


# ----------------------------------------------------------------------------------
# many photos: noise in fixed chunks, drawing in small batches on every core
# ----------------------------------------------------------------------------------

# Photos drawn together. Small batches stay in the CPU's caches. A multiple of 32 (two
# AVX-512 vectors of float32) makes vectorised kernels split every tensor at the same
# pixels as one pass over a whole chunk would, so the pixels match it exactly.
BATCH = 64


def chunk_size(size: int) -> int:
    """Photos per noise draw: about a million pixels, so memory stays bounded.

    It depends only on the image size, which keeps the random stream, and so the
    pixels, the same on every machine.
    """
    return max(1, (1 << 20) // (size * size))


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def render_batches(ages, genders, identities, uniforms, difficulty: str, seed: int, size: int,
                   generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``render`` for any number of photos: [n] inputs -> uint8 [n, 3, size, size] on the CPU.

    The noise is drawn on the CPU from ``generator``, one chunk (``chunk_size``) at a
    time, so every device sees the same numbers; at most two chunks are alive at once.
    On the CPU, batches of ``BATCH`` photos are drawn by ``torch.get_num_threads()``
    workers (at most one per usable core), each with one torch thread, so the photos
    do not depend on the thread count; the caller's thread count is restored after.
    """
    n = ages.shape[0]
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)

    def draw(part: slice, noise: torch.Tensor) -> None:
        out[part] = render(ages[part].to(device), genders[part].to(device), identities[part].to(device),
                           uniforms[part].to(device), difficulty, seed, size, noise.to(device)).cpu()

    step = chunk_size(size)
    if device.type != "cpu":   # one pass per chunk: an accelerator wants large batches
        for start in range(0, n, step):
            draw(slice(start, start + step), torch.randn(min(step, n - start), 4, size, size, generator=generator))
        return out
    threads = torch.get_num_threads()
    workers = min(threads, _usable_cores(), -(-n // BATCH))
    pool = ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) if workers > 1 else None
    torch.set_num_threads(1)
    try:
        pending = []
        for start in range(0, n, step):
            stop = min(start + step, n)
            noise = torch.randn(stop - start, 4, size, size, generator=generator)
            parts = [(slice(i, min(i + BATCH, stop)), noise[i - start:i - start + BATCH])
                     for i in range(start, stop, BATCH)]
            if pool is None:
                for part in parts:
                    draw(*part)
                continue
            jobs = [pool.submit(draw, *part) for part in parts]
            for job in pending:   # the chunk before this one is done: its noise can go
                job.result()
            pending = jobs
        for job in pending:
            job.result()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        torch.set_num_threads(threads)
    return out
