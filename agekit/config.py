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
* ``cpu``: the same method at laptop size: the small IR at 24 px on 6000 synthetic
  faces for 8 epochs, trained from scratch, hence a larger learning rate (1e-3) and a weight
  decay scaled down with it; a few minutes on two cores.
* ``smoke``: the smallest run that still passes through every part (two epochs,
  so RAPL's references switch on); seconds. For tests.

Reading and setting dotted keys, overrides, plain dicts and TOML files live in
``agekit.config_keys``; every one of its names is importable from here too.

Every key can be changed from the command line (``agekit train --set optim.lr=1e-4``);
an unknown key or a value of the wrong type is refused with a message that names
the key, suggests the nearest known one and lists the keys of its section.

Taught in ``notebooks/06_rapl_training.ipynb``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from agekit.normalization import NORMALIZATIONS

METHODS = ("rapl", "siamese")
PRESETS = ("smoke", "cpu", "gpu", "gpu_ir50")
# RAPL's Table 3: which parts each row switches on (agekit.models.RAPLNet.from_variant builds them).
VARIANTS: dict[str, dict] = {
    "FC": {"head": "fc", "gender": False, "rapl": False},
    "EVR": {"head": "evr", "gender": False, "rapl": False},
    "EVR+GP": {"head": "evr", "gender": True, "rapl": False},
    "EVR+RAPL": {"head": "evr", "gender": False, "rapl": True},
    "EVR+RAPL+GP": {"head": "evr", "gender": True, "rapl": True},
}
# The backbones (agekit.models.backbones builds them) and the image sides each accepts:
# (multiple, smallest). The IR backbones halve the side in each of their 3 stages, so it must be a
# multiple of 2**3; Inception V3 shrinks a side under 75 px to nothing before its last blocks.
BACKBONES = ("ir50", "ir_small", "inception_v3")
BACKBONE_SIDES = {"ir50": (8, 8), "ir_small": (8, 8), "inception_v3": (1, 75)}
# Defaults written once: the Siamese paper's margin (Fig. 7) and Q, kNN's M, the evaluation batch.
SIAMESE_MARGIN = 3.0  # ages within this many years count as the same class
CONTRASTIVE_Q = 100.0  # Q of the revised contrastive loss
KNN_K = 20  # M, neighbours averaged by kNN
EVAL_BATCH_SIZE = 256  # faces per batch when predicting
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
    n: int = 6000  # synthetic faces to generate
    image_size: int = 24  # side in pixels the model sees (stored faces of another size are resized)
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
    margin: float = SIAMESE_MARGIN  # ages within this many years count as the same class
    q: float = CONTRASTIVE_Q  # Q of the revised contrastive loss
    k: int = KNN_K  # M, neighbours averaged by kNN


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (MultiStepLR)."""

    name: str = "adam"  # adam (RAPL) | adamw | adadelta (the Siamese paper)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    milestones: list[int] = field(default_factory=lambda: [5, 7])  # epochs at which lr *= gamma
    gamma: float = 0.1


@dataclass
class TrainConfig:
    """The loop itself."""

    epochs: int = 8
    batch_size: int = 64  # the global batch (split over processes under torchrun)
    eval_batch_size: int = EVAL_BATCH_SIZE
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
        _check_image_side(self.data.image_size, self.model.backbone)
        if self.train.batch_size < 2:
            raise ConfigError("train.batch_size must be at least 2 (batch norm and the Siamese pairs need two faces).")
        if any(m < 1 for m in self.optim.milestones) or sorted(self.optim.milestones) != self.optim.milestones:
            raise ConfigError(f"optim.milestones must be increasing epoch numbers >= 1, got {self.optim.milestones}.")
        return self


def valid_image_sides(backbone: str, near: int) -> list[int]:
    """The image sides ``backbone`` accepts that lie nearest to ``near`` (one or two of them)."""
    multiple, smallest = BACKBONE_SIDES[backbone]
    if near <= smallest:
        return [smallest]
    below = near // multiple * multiple
    return [below] if below == near else [below, below + multiple]


def _check_image_side(side: int, backbone: str) -> None:
    multiple, smallest = BACKBONE_SIDES[backbone]
    if side >= smallest and side % multiple == 0:
        return
    rule = f"a multiple of {multiple}" + (f" of at least {smallest}" if smallest > multiple else "")
    if multiple == 1:
        rule = f"at least {smallest}"
    nearest = " or ".join(str(s) for s in valid_image_sides(backbone, side))
    raise ConfigError(f"data.image_size={side} does not suit model.backbone={backbone!r}, whose image side must be "
                      f"{rule}; use {nearest}.")


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
        # schedule shape (two drops by 10x) compressed into 8 epochs. More faces at a lower
        # side beat fewer at a higher one on these synthetic faces: 6000 at 24 px for 8 epochs
        # reached a lower test MAE than 4000 at 32 px for 15, in about half the time
        # (benchmarks/trainer.md); 48 px did not beat 32 px.
        config.data = DataConfig(n=6000, image_size=24)
        config.optim = OptimConfig(lr=1e-3, weight_decay=1e-4, milestones=[5, 7])
        config.train = TrainConfig(epochs=8, batch_size=64)
    else:  # smoke
        config.data = DataConfig(n=240, image_size=24)
        config.optim = OptimConfig(lr=1e-3, weight_decay=1e-4, milestones=[1])
        config.train = TrainConfig(epochs=2, batch_size=32, eval_batch_size=128)
        config.siamese.k = 5
    return config


PRESET_USES = {
    "smoke": "tests: the smallest run through every part; seconds",
    "cpu": "a laptop: the method at small size, trained from scratch; minutes on two cores",
    "gpu": "each paper's own setting (give model.pretrained); hours on one GPU",
    "gpu_ir50": "RAPL's setting for either method: both methods on one backbone and schedule",
}


def describe_preset(name: str, method: str = "rapl") -> str:
    """One line read from ``preset(name, method)`` itself, so it cannot drift from the values.

    ``describe_preset("cpu")`` -> ``"ir_small at 24 px, 6000 synthetic faces, 8 epochs, batch 64, adam lr 0.001"``.
    """
    c = preset(name, method)
    return (f"{c.model.backbone} at {c.data.image_size} px, {c.data.n} synthetic faces, {c.train.epochs} epochs, "
            f"batch {c.train.batch_size}, {c.optim.name} lr {c.optim.lr:g}")


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
    The cpu preset's drops after epochs 5 and 7 of 8 become [3, 4] for 5 epochs and [19, 26] for 30.
    """
    _at_least("train.epochs", epochs, 1)
    config = copy.deepcopy(config)
    old = config.train.epochs
    if epochs != old:
        scaled = {max(1, round(m * epochs / old)) for m in config.optim.milestones}
        config.optim.milestones = sorted(m for m in scaled if m < epochs)
        config.train.epochs = epochs
    return config


# ----------------------------------------------------------------------------- keys, dicts and TOML files
# (agekit.config_keys; imported last because it builds on the classes above)

from agekit.config_keys import (  # noqa: E402,F401
    _coerce, _field_type, _parse_text, _sections, _toml_value, _type_name, _unknown, allowed_keys, apply_overrides,
    config_from_dict, config_to_dict, get_value, load_config, parse_override, read_toml, save_config, set_value,
    to_toml, tomllib, write_text_atomic,
)
