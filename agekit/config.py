"""Training settings as dataclasses: presets, TOML files and ``key=value`` overrides.

A run is described by one :class:`Config` with a section per concern::

    config = preset("cpu", method="rapl")              # smoke | cpu | gpu
    config = apply_overrides(config, ["optim.lr=3e-4", "train.epochs=5"])
    save_config(config, "runs/x/config.toml")          # read back with load_config

The presets:

* ``gpu``: each paper's own setting for its method.
  RAPL (Sec. IV-A and the authors' code): IR50 at 112 px, batch 64, Adam
  with lr 1e-5 and weight decay 1e-2, 30 epochs, the learning rate times 0.1 at
  epochs 10 and 20, the best model chosen by validation MAE. The paper fine-tunes
  a face-recognition IR50, so give ``model.pretrained`` when you have the weights.
  Siamese (Jeong et al., Sec. 3): Inception V3 pretrained on ImageNet (give
  torchvision's ``inception_v3`` weights as ``model.pretrained``) at 227 px,
  batch 128, dropout 0.5, N_a = 70, N_g = 10, M = 20 neighbours, Adadelta, and
  no augmentation (the paper names none). The paper gives no learning rate,
  decay or schedule for Adadelta; agekit takes Zeiler's method as published
  (lr 1.0, rho 0.95, eps 1e-6, no weight decay) at a constant rate, and the 275
  epochs the paper says its multi-task model needed to converge on MORPH.
  (TensorFlow's AdadeltaOptimizer, which the authors may have used, defaults to
  lr 0.001: ``--set optim.lr=0.001`` to try it.)
* ``gpu_ir50``: RAPL's setting on IR50 at 112 px for either method; for the
  Siamese method it compares the two methods on one backbone and one schedule
  (for RAPL it equals ``gpu``).
* ``cpu``: the same method at laptop size: the small IR at 32 px on synthetic
  faces, trained from scratch, hence a larger learning rate (1e-3) and a weight
  decay scaled down with it; a few minutes on two cores.
* ``smoke``: the smallest run that still passes through every part (two epochs,
  so RAPL's references switch on); seconds. For tests.

Every key can be changed from the command line (``agekit train --set optim.lr=1e-4``);
an unknown key or a value of the wrong type is refused with a message that names
the key and lists the allowed ones.

Taught in ``notebooks/06_rapl_training.ipynb``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

from agekit._io import atomic_write_text
from agekit.normalization import NORMALIZATIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

METHODS = ("rapl", "siamese")
PRESETS = ("smoke", "cpu", "gpu", "gpu_ir50")
VARIANTS = ("FC", "EVR", "EVR+GP", "EVR+RAPL", "EVR+RAPL+GP")
BACKBONES = ("ir50", "ir_small", "inception_v3")
REFERENCE_MODES = ("latest", "best_val")
OPTIMIZERS = ("adam", "adamw", "adadelta")
DIFFICULTIES = ("easy", "standard", "hard")
NORMALIZATION_CHOICES = ("auto",) + tuple(NORMALIZATIONS)  # see agekit.normalization


class ConfigError(ValueError):
    """A setting that does not exist or has a value of the wrong type."""


@dataclass
class DataConfig:
    """Where the faces come from: a prepared data set, or synthetic faces."""

    manifest: str = ""  # a prepared data set's manifest; "" trains on synthetic faces
    n: int = 4000  # synthetic faces to generate
    image_size: int = 32  # side in pixels the model sees (stored faces of another size are resized)
    difficulty: str = "standard"  # synthetic faces: easy | standard | hard
    seed: int = 0  # seed of the synthetic faces and of their identity split
    fractions: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])  # synthetic train, val, test shares
    augment: bool = True  # the paper's flips, grayscale, rotation, sharpness (training only)
    augmentation: str = "agekit"  # their parameters: agekit | rapl_authors (see agekit.data.augment)


@dataclass
class ModelConfig:
    """The backbone shared by both methods."""

    backbone: str = "ir_small"  # ir50 | ir_small | inception_v3
    pretrained: str = ""  # backbone weights: IR-50 (face.evoLVe, POSTER++, a RAPL authors' model), torchvision Inception V3
    normalization: str = "auto"  # auto (that of the pretrained weights) | symmetric ([-1, 1]) | imagenet (mean/std)


@dataclass
class RAPLConfig:
    """RAPL's variant (Table 3) and the weights of its joint loss (eq. 8)."""

    variant: str = "EVR+RAPL+GP"  # FC | EVR | EVR+GP | EVR+RAPL | EVR+RAPL+GP
    lam: float = 1.0  # eq. 8: weight of the gender loss
    mu: float = 1.0  # eq. 8: weight of the position loss
    references: str = "latest"  # latest (epoch just finished) | best_val (authors' code)


@dataclass
class SiameseConfig:
    """The Siamese baseline: embedding sizes, the revised contrastive loss and kNN."""

    age_dim: int = 70  # N_a, the age embedding's size
    gender_dim: int = 10  # N_g, the gender embedding's size
    dropout: float = 0.5
    gender: bool = True  # train the gender embedding too (multi-task)
    margin: float = 3.0  # ages within this many years count as the same class
    q: float = 100.0  # Q of the revised contrastive loss
    k: int = 20  # M, neighbours averaged by kNN


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (MultiStepLR)."""

    name: str = "adam"  # adam (RAPL) | adamw | adadelta (the Siamese paper)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    milestones: list[int] = field(default_factory=lambda: [10, 13])  # epochs at which lr *= gamma
    gamma: float = 0.1


@dataclass
class TrainConfig:
    """The loop itself."""

    epochs: int = 15
    batch_size: int = 64  # the global batch (split over processes under torchrun)
    eval_batch_size: int = 256
    seed: int = 0  # model init, shuffling, augmentation
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
    amp: bool = True  # mixed precision on CUDA (bfloat16, else float16)
    channels_last: bool = True  # channels-last memory layout on CUDA and the CPU
    stop_after: int = 0  # end this run after so many epochs (0 = run to the end); resume later


@dataclass
class Config:
    """Everything that defines a training run."""

    method: str = "rapl"  # rapl | siamese
    preset: str = "cpu"  # the preset these values started from (informative)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rapl: RAPLConfig = field(default_factory=RAPLConfig)
    siamese: SiameseConfig = field(default_factory=SiameseConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "Config":
        """Check every choice and range; return self. Raises :class:`ConfigError`."""
        _one_of("method", self.method, METHODS)
        _one_of("preset", self.preset, PRESETS + ("custom",))
        _one_of("data.difficulty", self.data.difficulty, DIFFICULTIES)
        from agekit.data.augment import AUGMENTATIONS  # torch is needed from here on anyway

        _one_of("data.augmentation", self.data.augmentation, AUGMENTATIONS)
        _one_of("model.backbone", self.model.backbone, BACKBONES)
        _one_of("model.normalization", self.model.normalization, NORMALIZATION_CHOICES)
        _one_of("rapl.variant", self.rapl.variant, VARIANTS)
        _one_of("rapl.references", self.rapl.references, REFERENCE_MODES)
        _one_of("optim.name", self.optim.name, OPTIMIZERS)
        for key in ("data.n", "data.image_size", "siamese.age_dim", "siamese.gender_dim", "siamese.k",
                    "train.epochs", "train.batch_size", "train.eval_batch_size"):
            _at_least(key, get_value(self, key), 1)
        _at_least("train.stop_after", self.train.stop_after, 0)
        for key in ("rapl.lam", "rapl.mu", "siamese.margin", "optim.weight_decay"):
            _at_least(key, get_value(self, key), 0)
        for key in ("siamese.q", "optim.lr", "optim.gamma"):
            if not get_value(self, key) > 0:
                raise ConfigError(f"{key} must be positive, got {get_value(self, key)}.")
        if not 0 <= self.siamese.dropout < 1:
            raise ConfigError(f"siamese.dropout must lie in [0, 1), got {self.siamese.dropout}.")
        fractions = self.data.fractions
        if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
            raise ConfigError(f"data.fractions must be three shares (train, val, test) adding up to 1, got {fractions}.")
        if self.train.batch_size < 2:
            raise ConfigError("train.batch_size must be at least 2 (batch norm and the Siamese pairs need two faces).")
        if any(m < 1 for m in self.optim.milestones) or sorted(self.optim.milestones) != self.optim.milestones:
            raise ConfigError(f"optim.milestones must be increasing epoch numbers >= 1, got {self.optim.milestones}.")
        return self


def _one_of(key: str, value, options) -> None:
    if value not in options:
        raise ConfigError(f"{key} must be one of {list(options)}, got {value!r}.")


def _at_least(key: str, value, minimum) -> None:
    if value < minimum:
        raise ConfigError(f"{key} must be at least {minimum}, got {value}.")


# ----------------------------------------------------------------------------- presets


def preset(name: str = "cpu", method: str = "rapl") -> Config:
    """The settings of preset ``name`` ("smoke", "cpu", "gpu", "gpu_ir50") for ``method`` ("rapl", "siamese").

    "gpu" is each paper's own setting for its method; "gpu_ir50" is RAPL's for either.
    Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    _one_of("preset", name, PRESETS)
    _one_of("method", method, METHODS)
    config = Config(method=method, preset=name)
    if name == "gpu" and method == "siamese":
        # Jeong et al. Sec. 3: Inception V3 (ImageNet), 227 px, batch 128, Adadelta; the rest: see above.
        # 10000 synthetic faces at 227 px are 1.5 GB of uint8; real data come from data.manifest.
        config.data = DataConfig(n=10000, image_size=227, augment=False)  # the paper names no augmentation
        config.model = ModelConfig(backbone="inception_v3")
        config.optim = OptimConfig(name="adadelta", lr=1.0, weight_decay=0.0, milestones=[])
        config.train = TrainConfig(epochs=275, batch_size=128, eval_batch_size=256)
    elif name in ("gpu", "gpu_ir50"):
        # RAPL Sec. IV-A: batch 64, Adam, lr 1e-5, weight decay 1e-2, 30 epochs, lr x0.1 every 10 epochs.
        config.data = DataConfig(n=20000, image_size=112)
        config.model = ModelConfig(backbone="ir50")
        config.optim = OptimConfig(lr=1e-5, weight_decay=1e-2, milestones=[10, 20])
        config.train = TrainConfig(epochs=30, batch_size=64, eval_batch_size=512)
    elif name == "cpu":
        # Trained from scratch: a larger step, a weight decay scaled with it, the paper's
        # schedule shape (two drops by 10x) compressed into 15 epochs. (48 px did not beat
        # 32 px with the small IR; more faces did.)
        config.data = DataConfig(n=4000, image_size=32)
        config.optim = OptimConfig(lr=1e-3, weight_decay=1e-4, milestones=[10, 13])
        config.train = TrainConfig(epochs=15, batch_size=64)
    else:  # smoke
        config.data = DataConfig(n=240, image_size=24)
        config.optim = OptimConfig(lr=1e-3, weight_decay=1e-4, milestones=[1])
        config.train = TrainConfig(epochs=2, batch_size=32, eval_batch_size=128)
        config.siamese.k = 5
    return config


def resolve_preset(name: str, device="auto", gpu: str = "gpu") -> str:
    """``"auto"`` -> ``gpu`` (default ``"gpu"``) when ``device`` resolves to CUDA, else ``"cpu"``; other names
    are checked and returned.

    The one rule the command line (``agekit train --preset auto``) and the lessons
    (``agekit.lesson.settings``) share. An unknown name is an error, never a fallback.
    """
    if name != "auto":
        _one_of("preset", name, PRESETS + ("auto",))
        return name
    from agekit.device import resolve_device  # imports torch: only when "auto" must be decided

    return gpu if resolve_device(device).type == "cuda" else "cpu"


def with_epochs(config: Config, epochs: int) -> Config:
    """A copy of ``config`` trained for ``epochs`` epochs, its learning-rate drops moved to the same places.

    Each milestone m of the ``E``-epoch schedule becomes ``round(m * epochs / E)`` (at least 1);
    drops that would fall at or after the last epoch are left out, since they would never apply.
    The cpu preset's drops after epochs 10 and 13 of 15 become [3, 4] for 5 epochs and [20, 26] for 30.
    """
    _at_least("train.epochs", epochs, 1)
    config = copy.deepcopy(config)
    old = config.train.epochs
    if epochs != old:
        scaled = {max(1, round(m * epochs / old)) for m in config.optim.milestones}
        config.optim.milestones = sorted(m for m in scaled if m < epochs)
        config.train.epochs = epochs
    return config


# ----------------------------------------------------------------------------- dicts and keys


def _sections(cls) -> dict[str, type]:
    return {f.name: hint for f, hint in zip(dataclasses.fields(cls), typing.get_type_hints(cls).values())}


def allowed_keys(config: Config | None = None) -> list[str]:
    """Every settable dotted key, e.g. ``["data.manifest", ..., "train.stop_after"]``."""
    keys = []
    for name, hint in _sections(Config).items():
        if dataclasses.is_dataclass(hint):
            keys += [f"{name}.{sub}" for sub in _sections(hint)]
        else:
            keys.append(name)
    return keys


def _field_type(key: str):
    section, _, name = key.partition(".")
    hints = _sections(Config)
    if section not in hints:
        return None
    hint = hints[section]
    if not name:
        return None if dataclasses.is_dataclass(hint) else hint
    if not dataclasses.is_dataclass(hint):
        return None
    return _sections(hint).get(name)


def _unknown(key: str) -> ConfigError:
    return ConfigError(f"Unknown setting {key!r}. Allowed keys: {', '.join(allowed_keys())}.")


def get_value(config: Config, key: str):
    """The value at a dotted key, e.g. ``get_value(config, "optim.lr")``."""
    if _field_type(key) is None:
        raise _unknown(key)
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def set_value(config: Config, key: str, value) -> None:
    """Set a dotted key in place after checking ``value`` against the field's type."""
    hint = _field_type(key)
    if hint is None:
        raise _unknown(key)
    target = config
    *parents, name = key.split(".")
    for part in parents:
        target = getattr(target, part)
    setattr(target, name, _coerce(key, hint, value))


def _type_name(hint) -> str:
    return {int: "a whole number", float: "a number", bool: "true or false", str: "text"}.get(
        hint, f"a list of {_type_name(typing.get_args(hint)[0]) if typing.get_args(hint) else 'values'}"
    )


def _coerce(key: str, hint, value):
    """``value`` (already typed, e.g. from TOML) checked and converted to the field's type."""
    wrong = ConfigError(f"Setting {key!r} must be {_type_name(hint)}, got {value!r}.")
    if typing.get_origin(hint) is list:
        if not isinstance(value, (list, tuple)):
            raise wrong
        (item,) = typing.get_args(hint)
        return [_coerce(key, item, v) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong
        return value
    raise wrong  # pragma: no cover - every field has one of the types above


def _parse_text(key: str, hint, text: str):
    """A command-line string parsed by the field's type: ``"3"``, ``"1e-4"``, ``"true"``, ``"[10, 20]"``."""
    text = text.strip()
    wrong = ConfigError(f"Setting {key!r} must be {_type_name(hint)}, got {text!r}.")
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        parts = [p for p in (s.strip() for s in inner.split(",")) if p]
        return [_parse_text(key, item, p) for p in parts]
    if hint is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise wrong
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise wrong from None
    if hint is float:
        try:
            number = float(text)
        except ValueError:
            raise wrong from None
        return number
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def parse_override(text: str) -> tuple[str, object]:
    """``"optim.lr=1e-4"`` -> ``("optim.lr", 0.0001)``, typed by the field it names."""
    key, sep, raw = str(text).partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"An override must look like key=value (e.g. optim.lr=1e-4), got {text!r}.")
    hint = _field_type(key)
    if hint is None:
        raise _unknown(key)
    return key, _parse_text(key, hint, raw)


def apply_overrides(config: Config, overrides) -> Config:
    """A copy of ``config`` with ``overrides`` applied: ``["key=value", ...]`` or ``{"key": value}``.

    Strings in the list form are parsed by the field's type; values in the dict form
    are checked against it. Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    config = copy.deepcopy(config)
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
    for key, value in items:
        set_value(config, key, value)
    return config


def config_to_dict(config: Config) -> dict:
    """A plain nested dict of str, int, float, bool and lists (for TOML, JSON and checkpoints)."""
    return dataclasses.asdict(config)


def config_from_dict(values: dict, base: Config | None = None) -> Config:
    """Overlay a (possibly partial) nested dict on ``base``.

    Without ``base``, the dict's ``preset`` and ``method`` (default cpu, rapl) choose
    the preset to start from, so a file only needs the keys it changes.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"A configuration must be a table of settings, got {type(values).__name__}.")
    if base is None:
        name = values.get("preset", "cpu")
        base = preset(name if name in PRESETS else "cpu", values.get("method", "rapl"))
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            if not dataclasses.is_dataclass(_sections(Config).get(key)):
                raise _unknown(key)
            flat.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            flat[key] = value
    return apply_overrides(base, flat)


# ----------------------------------------------------------------------------- TOML


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # e.g. 0.001, 1e-05: both valid TOML floats
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are a subset of TOML's basic strings
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"Cannot write {type(value).__name__} {value!r} to TOML.")


def to_toml(values: dict, prefix: str = "") -> str:
    """A nested dict of plain values as TOML text: scalars first, then one table per sub-dict."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in values.items() if not isinstance(value, dict)]
    for key, value in values.items():
        if isinstance(value, dict):
            name = f"{prefix}{key}"
            lines += ["", f"[{name}]", to_toml(value, prefix=f"{name}.").rstrip("\n")]
    return "\n".join(lines).lstrip("\n") + "\n"


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :mod:`agekit._io`)."""
    return atomic_write_text(path, text)


def save_config(config: Config, path) -> Path:
    """Write ``config`` as TOML (atomically). Taught in ``notebooks/06_rapl_training.ipynb``."""
    header = "# agekit training configuration; load with agekit.config.load_config or `agekit train --config`\n"
    return write_text_atomic(path, header + to_toml(config_to_dict(config)))


def load_config(path, base: Config | None = None) -> Config:
    """Read a TOML file (complete or partial) into a checked :class:`Config`.

    Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}.") from None
    return config_from_dict(values, base).validate()
