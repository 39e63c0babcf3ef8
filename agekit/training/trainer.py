"""One training loop for RAPL and the Siamese baseline.

    result = train(preset("cpu", "rapl"), out_dir="runs/rapl")
    result.history[-1]["val_mae"], result.test_metrics["mae"]
    predictions = predict(result, result.data.test)      # age, gender, position_age, features

Per epoch:

1. shuffle the training faces with a seeded generator (one global order, cut
   into per-process pieces under torchrun), so that every face feeds RAPL's
   reference bank (a last batch of a single face per process is dropped);
2. for every batch: uint8 images -> device -> floats in [0, 1] -> the paper's
   augmentation (training only, its own generator) -> the input scaling of the
   backbone's weights (:mod:`agekit.normalization`); forward in mixed
   precision on CUDA; the method's loss in float32; a NaN or infinite loss stops
   the run at once, naming the epoch, the step and the loss part; backward, step;
   the method's per-batch hook (RAPL feeds its reference bank);
3. evaluate on the validation split (the Siamese method first embeds the
   training set as its kNN gallery), then the method's end-of-epoch hook (RAPL
   selects the next epoch's references, Algorithm 1), then the learning-rate
   schedule;
4. write ``last.pt`` (and ``best.pt`` when the validation MAE improved).

At the end the best model (lowest validation MAE, as in the paper) is tested.
The method-specific parts live in :mod:`agekit.training.methods`.

Taught in ``notebooks/06_rapl_training.ipynb``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import math
import os
import queue
import random
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agekit._io import folder_lock, remove_stale_temps
from agekit.config import Config, OptimConfig, config_from_dict, config_to_dict, save_config, write_text_atomic
from agekit.data.augment import BatchAugment, augmentation
from agekit.data.dataset import FaceDataset, to_float
from agekit.data.labels import AgeLabels
from agekit.data.splits import identity_split, split_indices
from agekit.device import (amp_dtype, autocast, configure_threads, describe, evaluation, grad_scaler, prepare_model,
                           resolve_device, use_channels_last)
from agekit.metrics import confidence_score, summarize
from agekit.normalization import DEFAULT as DEFAULT_NORMALIZATION
from agekit.normalization import normalize_as
from agekit.training import distributed
from agekit.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_scheduler_state,
    restore_rng,
    rng_state,
    save_checkpoint,
    scheduler_state,
)
from agekit.training.methods import Method, adapt_to_data, make_method, rapl_outputs, siamese_outputs, unwrap

# Settings that may differ between a run and its continuation; anything else must match.
RESUMABLE_CHANGES = ("train.epochs", "train.stop_after", "train.device", "train.eval_batch_size",
                     "train.amp", "train.channels_last")
RUN_FILES = ("config.toml", "last.pt", "best.pt", "metrics.json")  # what a run writes into its folder


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- data


@dataclass
class DataSplits:
    """The train / val / test data sets and the age labels (from the training split)."""

    train: FaceDataset
    val: FaceDataset
    test: FaceDataset
    age_labels: AgeLabels
    description: str = ""

    @property
    def has_gender(self) -> bool:
        return self.train.has_gender

    def split(self, name: str) -> FaceDataset:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {name!r}.")
        return getattr(self, name)


@functools.lru_cache(maxsize=2)
def _synthetic(n: int, image_size: int, seed: int, difficulty: str):
    from agekit.data.synthetic import make_synthetic_faces

    return make_synthetic_faces(n, image_size=image_size, seed=seed, difficulty=difficulty)


def load_data(config: Config) -> DataSplits:
    """The data sets ``config.data`` describes: a prepared manifest, or synthetic faces split by identity.

    Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    d = config.data
    if d.manifest:
        from agekit.data.prepare import load_prepared

        prepared = load_prepared(d.manifest)
        sets = {name: prepared.subset(name) for name in ("train", "val", "test")}
        description = f"{d.manifest}: {len(prepared)} faces at {prepared.image_size} px"
    else:
        faces = _synthetic(d.n, d.image_size, d.seed, d.difficulty)
        codes = identity_split(faces.ages, faces.identities, fractions=tuple(d.fractions), seed=d.seed)
        dataset = FaceDataset(faces.images, faces.ages, faces.genders, faces.identities)
        parts = split_indices(codes)
        empty = [name for name, index in parts.items() if len(index) == 0]
        if empty:
            raise ValueError(
                f"data.fractions={list(d.fractions)} leaves no faces in {' and '.join(empty)} (of {d.n} synthetic "
                "faces); training needs faces in train, val and test: give each a share, e.g. [0.6, 0.2, 0.2]."
            )
        sets = {name: dataset.subset(index) for name, index in parts.items()}
        description = f"{d.n} synthetic faces ({d.difficulty}, seed {d.seed}) at {d.image_size} px"
    return as_splits(sets, description)


def data_fingerprint(data: DataSplits, images_per_split: int = 32) -> str:
    """A short hash of the splits: their sizes, every age and gender, and evenly spaced images.

    Checkpoints keep it, so a run cached in ``runs/`` is never continued on data that
    has changed since (a new version of the synthetic generator, another folder). It
    reads a few images per split, not all, so it stays instant on large data sets.
    """
    digest = hashlib.sha256()
    for name in ("train", "val", "test"):
        dataset = data.split(name)
        digest.update(f"{name}:{len(dataset)};".encode())
        for labels in (dataset.ages, dataset.genders):
            if labels is not None:
                digest.update(torch.as_tensor(labels).cpu().numpy().tobytes())
        index = torch.linspace(0, len(dataset) - 1, min(images_per_split, len(dataset))).round().long()
        digest.update(torch.as_tensor(dataset.images[index]).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def as_splits(data, description: str = "") -> DataSplits:
    """Accept a :class:`DataSplits`, a dict {"train", "val", "test": FaceDataset} or a PreparedData."""
    if isinstance(data, DataSplits):
        return data
    if hasattr(data, "subset") and hasattr(data, "store"):  # agekit.data.prepare.PreparedData
        data = {name: data.subset(name) for name in ("train", "val", "test")}
    if not isinstance(data, dict) or not {"train", "val", "test"} <= set(data):
        raise TypeError(
            "data must be a DataSplits, a PreparedData, or a dict with FaceDataset values for "
            f"'train', 'val' and 'test'; got {type(data).__name__}."
        )
    for name in ("train", "val", "test"):
        if not isinstance(data[name], FaceDataset) or len(data[name]) == 0:
            raise ValueError(f"data[{name!r}] must be a non-empty FaceDataset.")
    labels = AgeLabels.from_ages(data["train"].ages)
    return DataSplits(data["train"], data["val"], data["test"], labels, description)


# ----------------------------------------------------------------------------- images


def prepare_images(images: torch.Tensor, image_size: int | None = None, augment: BatchAugment | None = None,
                   generator: torch.Generator | None = None, channels_last: bool = False,
                   normalization: str = DEFAULT_NORMALIZATION) -> torch.Tensor:
    """uint8 [b, 3, H, W] (on the device) -> the model's input [b, 3, S, S].

    Resizes when H differs from ``image_size``, augments when ``augment`` is given,
    then scales as ``normalization`` says ("symmetric": [-1, 1]; "imagenet": ImageNet
    mean/std; see :mod:`agekit.normalization`).
    """
    x = to_float(images)
    if image_size is not None and x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    if augment is not None:
        x = augment(x, generator)
    x = normalize_as(x, normalization)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _prefetch(items, enabled: bool, depth: int = 2):
    """Yield ``items`` produced by a background thread (reading the next batch while the GPU works)."""
    if not enabled:
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce():
        try:
            for item in items:
                buffer.put(item)
        except BaseException as error:  # handed to the consumer below
            buffer.put(error)
        buffer.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := buffer.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def run_outputs(outputs_fn, model: nn.Module, dataset: FaceDataset, batch_size: int, device: torch.device,
                image_size: int | None = None, dtype: torch.dtype | None = None, channels_last: bool = False,
                info: distributed.DistInfo | None = None, normalization: str = DEFAULT_NORMALIZATION) -> dict:
    """``outputs_fn(model, images)`` over this process's shard of ``dataset``, in order, in eval mode.

    Returns {name: tensor [k, ...]} for the k faces of the shard (all of them in one process).
    """
    info = info or distributed.DistInfo()
    index = distributed.shard(torch.arange(len(dataset)), info)
    starts = range(0, max(1, len(index)), batch_size)
    pin = device.type == "cuda"
    batches = (dataset.batch(index[s:s + batch_size]) for s in starts)
    batches = (b.pin_memory() if pin else b for b in batches)
    parts: dict[str, list] = {}
    was_training = model.training
    model.eval()
    try:
        with evaluation():
            for batch in _prefetch(batches, enabled=pin):
                images = batch.images.to(device, non_blocking=pin)
                with autocast(device, dtype):
                    out = outputs_fn(model, prepare_images(images, image_size, channels_last=channels_last,
                                                           normalization=normalization))
                for name, value in out.items():
                    parts.setdefault(name, []).append(value.float() if value.is_floating_point() else value)
    finally:
        model.train(was_training)
    return {name: torch.cat(values) for name, values in parts.items()}


def prediction_metrics(predictions: dict, dataset: FaceDataset) -> dict:
    """MAE, CS(5), RMSE, gender accuracy (when known) and, for RAPL's position head, the confidence score (eq. 12)."""
    ages = predictions["age"].cpu()
    true_genders = dataset.genders if "gender" in predictions else None
    pred_genders = predictions["gender"].cpu() if "gender" in predictions else None
    metrics = summarize(ages, dataset.ages, pred_genders, true_genders)
    if "position_age" in predictions:
        metrics["confidence5"] = confidence_score(ages, predictions["position_age"].cpu(), 5)  # eq. 12, t = 5
    return metrics


# ----------------------------------------------------------------------------- result


@dataclass
class TrainResult:
    """What :func:`train` returns.

    model: the best model (lowest validation MAE), in eval mode; history: one dict per
    epoch; test_metrics: the best model's test metrics (None if the run stopped early).
    ``references`` (RAPL) and ``gallery`` (Siamese) are what prediction needs;
    ``normalization`` is the input scaling the model was trained with.
    """

    model: nn.Module
    method: Method
    config: Config
    age_labels: AgeLabels
    history: list[dict]
    test_metrics: dict | None
    best_epoch: int
    out_dir: Path | None = None
    data: DataSplits | None = None
    notes: list[str] = field(default_factory=list)
    normalization: str = DEFAULT_NORMALIZATION

    @property
    def references(self) -> torch.Tensor | None:
        """RAPL's reference map R [n, c] that goes with the returned weights (None otherwise)."""
        return getattr(self.method, "eval_references", None)

    @property
    def gallery(self):
        """The Siamese kNN gallery of training embeddings (None for RAPL)."""
        return getattr(self.method, "gallery", None)

    def predict(self, dataset: FaceDataset, batch_size: int | None = None) -> dict:
        """Predictions for every face of ``dataset``; see :func:`predict`."""
        return predict(self, dataset, batch_size=batch_size)


# ----------------------------------------------------------------------------- the trainer


class EpochMeter:
    """Running sums of one epoch: each loss part weighted by batch size, and the absolute age errors.

    A step's sums are one float64 vector (so one all-reduce and one copy to the host
    per step): [part * b for each part, b where the part was present, sum |error|, count].
    """

    parts = ("total", "age", "gender", "position")

    def __init__(self):
        self.sums = torch.zeros(2 * len(self.parts) + 2, dtype=torch.float64)

    def step_sums(self, parts: dict, predicted: torch.Tensor | None, ages: torch.Tensor) -> torch.Tensor:
        """This step's vector, float32 on the device (MPS has no float64); accumulated in float64 on the host."""
        b = float(ages.numel())
        zero = parts["total"].new_zeros((), dtype=torch.float32)
        values = [parts[n].float() * b if n in parts else zero for n in self.parts]
        present = [zero + (b if n in parts else 0.0) for n in self.parts]
        if predicted is None:
            error, count = zero, zero
        else:
            error, count = (predicted.detach().float() - ages).abs().sum(), zero + b
        return torch.stack(values + present + [error, count])

    def broken_part(self, sums: torch.Tensor) -> str | None:
        """The name of a NaN or infinite loss part (a named part rather than "total"), or None."""
        broken = [n for n, v in zip(self.parts, sums[:len(self.parts)].tolist()) if not math.isfinite(v)]
        named = [n for n in broken if n != "total"]
        return (named or broken or [None])[0]

    def add(self, sums: torch.Tensor) -> None:
        self.sums += sums.double()

    def _mean(self, i: int) -> float | None:
        weight = float(self.sums[len(self.parts) + i])
        return float(self.sums[i]) / weight if weight > 0 else None

    def _mae(self) -> float | None:
        return float(self.sums[-2] / self.sums[-1]) if self.sums[-1] > 0 else None

    def postfix(self) -> dict:
        """For the progress bar: running loss and, when the method predicts ages in training, running MAE."""
        shown = {"loss": f"{self._mean(0):.3f}"}
        if self._mae() is not None:
            shown["mae"] = f"{self._mae():.2f}"
        return shown

    def record(self) -> dict:
        """loss, loss_<part> (mean per face), train_mae and train_images of the epoch."""
        record = {}
        for i, name in enumerate(self.parts):
            if self._mean(i) is not None:
                record["loss" if name == "total" else f"loss_{name}"] = self._mean(i)
        if self._mae() is not None:
            record["train_mae"] = self._mae()
        record["train_images"] = int(self.sums[len(self.parts)])
        return record



def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            keys += _config_differences(left, right, f"{prefix}{key}.")
        elif left != right:
            keys.append(f"{prefix}{key}")
    return keys


# Adadelta as Zeiler (2012) ran it (rho 0.95, eps 1e-6), cited by the Siamese paper without
# values of its own; with lr 1.0 (PyTorch's default) the update is exactly the paper's rule.
ADADELTA_RHO, ADADELTA_EPS = 0.95, 1e-6


def make_optimizer(parameters, optim: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser ``optim.name`` says (adam | adamw | adadelta) with ``optim.lr`` and ``optim.weight_decay``."""
    if optim.name == "adadelta":
        return torch.optim.Adadelta(parameters, lr=optim.lr, rho=ADADELTA_RHO, eps=ADADELTA_EPS,
                                    weight_decay=optim.weight_decay)
    optimizer_class = torch.optim.Adam if optim.name == "adam" else torch.optim.AdamW
    return optimizer_class(parameters, lr=optim.lr, weight_decay=optim.weight_decay)


class Trainer:
    """Holds a run's model, optimiser, schedule, generators and history; :meth:`fit` runs it.

    Most users call :func:`train`. Taught in ``notebooks/06_rapl_training.ipynb``.
    """

    def __init__(self, config: Config, data=None, out_dir=None, progress: bool = True, resume: bool = False,
                 verbose: bool | None = None):
        config = copy.deepcopy(config).validate()
        self.info, self.device = distributed.setup(config.train.device)
        configure_threads()
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.progress = progress and self.info.is_main
        self.verbose = (progress if verbose is None else verbose) and self.info.is_main
        t = config.train
        if t.batch_size % self.info.world_size:
            raise ValueError(f"train.batch_size={t.batch_size} must be divisible by the {self.info.world_size} processes.")

        seed_everything(t.seed)
        self.data = load_data(config) if data is None else as_splits(data)
        if len(self.data.train) < t.batch_size:
            raise ValueError(
                f"The training split has {len(self.data.train)} faces, fewer than train.batch_size={t.batch_size}; "
                "use more data or a smaller batch."
            )
        self.fingerprint = data_fingerprint(self.data)
        self.config, self.notes = adapt_to_data(config, self.data.has_gender)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        self.dtype = amp_dtype(self.device, t.amp)
        self.scaler = grad_scaler(self.device, self.dtype)
        self.channels_last = use_channels_last(self.device, t.channels_last)
        self.method = make_method(self.config, self.data.age_labels, self.device)

        self.normalization = DEFAULT_NORMALIZATION  # set from the weights' source by _build_model
        self.model, self.net = self._build_model(t.seed)  # net: the model, wrapped under torchrun

        o = self.config.optim
        self.optimizer = make_optimizer(self.model.parameters(), o)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=o.milestones, gamma=o.gamma)
        # One shuffling order for all processes; augmentation differs per process.
        self.generators = {
            "shuffle": torch.Generator().manual_seed(t.seed),
            "augment": torch.Generator().manual_seed(t.seed + 1 + 7919 * self.info.rank),
        }
        self.augment = augmentation(self.config.data.augmentation) if self.config.data.augment else None

        self.epoch = 0
        self.history: list[dict] = []
        self.best = {"epoch": 0, "val_mae": math.inf}
        self.best_state: dict | None = None
        if resume:
            self._resume()

    def _build_model(self, seed: int) -> tuple[nn.Module, nn.Module]:
        torch.manual_seed(seed)  # the model's initial weights
        model = self.method.build_model()
        source = None
        if self.config.model.pretrained:
            from agekit.models.pretrained import load_pretrained

            source = load_pretrained(model, self.config.model.pretrained)  # the loader of this backbone
            self.notes.append(f"Pretrained backbone: {source.description}")
        chosen = self.config.model.normalization
        self.normalization = chosen if chosen != "auto" else source.normalization if source else DEFAULT_NORMALIZATION
        if source is not None and chosen == "auto":
            self.notes.append(f"Input normalization: {self.normalization} (that of {source.source} weights).")
        model = prepare_model(model, self.device, self.channels_last)
        if not self.info.enabled:
            return model, model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # RAPL's position branch is idle in epoch 1, the gender embedding when a batch lacks genders.
        return model, DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)

    # ------------------------------------------------------------------ logging and files

    def log(self, text: str, always: bool = False) -> None:
        """Print a line (between progress bars) when verbose (or ``always``), on the main process only."""
        if self.verbose or (always and self.info.is_main):
            from tqdm.auto import tqdm

            tqdm.write(text)

    def _path(self, name: str) -> Path | None:
        return None if self.out_dir is None else self.out_dir / name

    def _state(self) -> dict:
        """Everything a continuation needs (collective: every process must call it)."""
        rng = distributed.gather_objects(rng_state(self.generators), self.info)
        return {
            "method": self.config.method,
            "config": config_to_dict(self.config),
            "age_labels": self.data.age_labels.values.clone(),
            "data_fingerprint": self.fingerprint,
            "has_gender": self.data.has_gender,
            "epoch": self.epoch,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler_state(self.scheduler),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "method_state": self.method.state_dict(),
            "eval_state": self.method.eval_state(),
            "rng": rng,
            "history": copy.deepcopy(self.history),
            "best": dict(self.best),
            "world_size": self.info.world_size,
            "notes": list(self.notes),
            "normalization": self.normalization,
        }

    def _resume(self) -> None:
        path = self._path("last.pt")
        if path is None:
            raise ValueError("resume=True needs out_dir, the folder of the run to continue.")
        if not path.is_file():
            raise FileNotFoundError(f"Nothing to resume in {self.out_dir}: there is no last.pt.")
        state = load_checkpoint(path)
        check_compatible(state, self.config, self.data.age_labels, path)
        saved = state.get("data_fingerprint")  # absent in checkpoints written before it was recorded
        if saved is not None and saved != self.fingerprint:
            raise CheckpointError(
                f"{path} was trained on other data (fingerprint {saved}, these data {self.fingerprint}): the data "
                "set or the synthetic generator changed since. Train into a new folder, or delete this one."
            )
        # a run goes on with the scaling it started with (check_compatible compared model.normalization)
        self.normalization = state.get("normalization", DEFAULT_NORMALIZATION)  # absent in older checkpoints
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        load_scheduler_state(self.scheduler, state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.method.load_state_dict(state["method_state"])
        self.method.load_eval_state(state["eval_state"])
        if len(state["rng"]) == self.info.world_size:
            restore_rng(state["rng"][self.info.rank], self.generators)
        else:
            self.log(f"Resuming {len(state['rng'])}-process random states on {self.info.world_size} processes: "
                     "the run continues, but not bit for bit.")
        self.epoch, self.history, self.best = int(state["epoch"]), list(state["history"]), dict(state["best"])
        best_path = self._path("best.pt")
        if best_path.is_file():
            best = load_checkpoint(best_path)
            if best["epoch"] == self.best["epoch"]:
                self.best_state = {"model": best["model"], "eval": best["eval_state"]}
        if self.best_state is None and self.best["epoch"]:
            self.log(f"best.pt does not hold epoch {self.best['epoch']}; the best model is chosen among the next epochs.")
            self.best = {"epoch": 0, "val_mae": math.inf}
        self.log(f"Resumed from {_shown(path)} after epoch {self.epoch}.")

    # ------------------------------------------------------------------ one epoch

    def _train_epoch(self) -> dict:
        t = self.config.train
        dataset, info = self.data.train, self.info
        self.net.train()
        order = torch.randperm(len(dataset), generator=self.generators["shuffle"])
        steps = -(-len(dataset) // t.batch_size)
        if len(dataset) - (steps - 1) * t.batch_size < 2 * info.world_size:
            steps -= 1  # a last batch of one face per process is dropped (batch norm needs two)
        pin = self.device.type == "cuda"
        batches = (dataset.batch(distributed.shard(order[s * t.batch_size:(s + 1) * t.batch_size], info))
                   for s in range(steps))
        batches = (b.pin_memory() if pin else b for b in batches)
        meter = EpochMeter()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, desc=f"epoch {self.epoch + 1}/{t.epochs}", unit="batch", leave=False,
                       dynamic_ncols=True)
        try:
            for step, batch in enumerate(_prefetch(batches, enabled=pin), start=1):
                batch = batch.to(self.device, non_blocking=pin)
                images = prepare_images(batch.images, self.config.data.image_size, self.augment,
                                        self.generators["augment"], self.channels_last, self.normalization)
                with autocast(self.device, self.dtype):
                    output = self.method.forward(self.net, images)
                total, parts = self.method.loss(output, batch.ages, batch.genders)  # float32, outside autocast

                # one synchronisation per step: loss parts and age errors, summed over processes
                sums = meter.step_sums(parts, self.method.train_ages(output), batch.ages)
                sums = distributed.all_reduce_sum(sums).cpu()
                broken = meter.broken_part(sums)
                if broken is not None:
                    raise self._diverged(step, broken)

                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler is not None:
                    self.scaler.scale(total).backward()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    total.backward()
                    self.optimizer.step()
                self.method.after_batch(output, batch.ages)

                meter.add(sums)
                if bar is not None:
                    bar.set_postfix(meter.postfix(), refresh=False)
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
        return meter.record()

    def _diverged(self, step: int, part: str) -> TrainingDiverged:
        where = f"epoch {self.epoch + 1}, step {step}"
        if self.out_dir is not None and self.epoch > 0:
            kept = f"The last good checkpoint is {self._path('last.pt')} (epoch {self.epoch})."
        elif self.out_dir is not None:
            kept = "No checkpoint was written yet (the first epoch did not finish)."
        else:
            kept = "No checkpoint is written without out_dir."
        return TrainingDiverged(
            f"Training stopped: the {part} loss became NaN or infinite at {where}. {kept} "
            "Try a smaller optim.lr, or check the data for broken labels."
        )

    # ------------------------------------------------------------------ evaluation

    def predict_split(self, dataset: FaceDataset) -> dict:
        """Predictions for all of ``dataset`` (gathered from every process), in dataset order."""
        t = self.config.train
        local = run_outputs(self.method.outputs, self.model, dataset, t.eval_batch_size, self.device,
                            self.config.data.image_size, self.dtype, self.channels_last, self.info,
                            self.normalization)
        local = self.method.finish(local)
        return {name: distributed.gather_cat(value, self.info) for name, value in local.items()}

    def build_gallery(self) -> None:
        """Siamese: embed the training set (eval mode, no augmentation) as the kNN gallery."""
        t, train = self.config.train, self.data.train
        local = run_outputs(self.method.outputs, self.model, train, t.eval_batch_size, self.device,
                            self.config.data.image_size, self.dtype, self.channels_last, self.info,
                            self.normalization)
        gathered = {name: distributed.gather_cat(value, self.info) for name, value in local.items()}
        self.method.set_gallery(gathered, train.ages, train.genders)

    def evaluate(self, split: str = "val") -> dict:
        """Metrics of the current weights on ``split`` ("train", "val" or "test")."""
        if self.method.needs_gallery and getattr(self.method, "gallery", None) is None:
            self.build_gallery()
        dataset = self.data.split(split)
        return prediction_metrics(self.predict_split(dataset), dataset)

    # ------------------------------------------------------------------ the run

    def fit(self) -> TrainResult:
        """Train until ``train.epochs`` (or ``train.stop_after`` epochs of this run), then test the best model."""
        t = self.config.train
        self.log(f"Training {self.config.method} ({self._model_name()}) on {describe(self.device, self.dtype)}"
                 + (f", {self.info.world_size} processes" if self.info.enabled else "")
                 + f"; data: {self.data.description or 'given data sets'}.")
        for note in self.notes:
            self.log(note, always=True)
        if self.out_dir is not None and self.info.is_main:
            save_config(self.config, self.out_dir / "config.toml")
        first = self.epoch
        while self.epoch < t.epochs and not (t.stop_after and self.epoch - first >= t.stop_after):
            self._run_epoch()
        complete = self.epoch >= t.epochs
        test_metrics = self._test() if complete else None
        if self.out_dir is not None and self.info.is_main:
            self._write_metrics(test_metrics, complete)
        return TrainResult(self.model.eval(), self.method, self.config, self.data.age_labels, self.history,
                           test_metrics, self.best["epoch"], self.out_dir, self.data, self.notes, self.normalization)

    def _model_name(self) -> str:
        if self.config.method == "rapl":
            return f"{self.config.rapl.variant}, {self.config.model.backbone}"
        return f"{'multi-task' if self.config.siamese.gender else 'age only'}, {self.config.model.backbone}"

    def _run_epoch(self) -> None:
        started = time.perf_counter()
        record = {"epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
        record.update(self._train_epoch())
        record["train_seconds"] = time.perf_counter() - started
        distributed.broadcast_buffers(self.model, self.info)
        self.method.begin_validation()
        if self.method.needs_gallery:
            self.build_gallery()
        val = self.evaluate("val")
        record.update({f"val_{name}": value for name, value in val.items()})
        self.method.end_epoch(val["mae"], functools.partial(distributed.gather_cat, info=self.info))
        self.scheduler.step()
        self.epoch += 1
        record["seconds"] = time.perf_counter() - started
        self.history.append(record)

        improved = val["mae"] < self.best["val_mae"]
        if improved:
            self.best = {"epoch": self.epoch, "val_mae": val["mae"]}
            self.best_state = {"model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                               "eval": copy.deepcopy(self.method.eval_state())}
        if self.out_dir is not None:
            state = self._state()
            if self.info.is_main:
                if improved:
                    save_checkpoint(state, self.out_dir / "best.pt")  # best first: see _resume
                save_checkpoint(state, self.out_dir / "last.pt")
        self.log(self._summary(record, improved))

    def _summary(self, record: dict, improved: bool) -> str:
        text = f"epoch {record['epoch']}/{self.config.train.epochs}"
        if "loss" in record:
            text += f"  loss {record['loss']:.4g}"
        if "train_mae" in record:
            text += f"  train MAE {record['train_mae']:.2f}"
        text += f"  val MAE {record['val_mae']:.2f}  CS5 {record['val_cs5']:.1f}%"
        if "val_gender_acc" in record:
            text += f"  gender {record['val_gender_acc']:.1f}%"
        return text + f"  ({record['seconds']:.1f} s){'  *best' if improved else ''}"

    def _test(self) -> dict:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state["model"])
            self.method.load_eval_state(self.best_state["eval"])
        metrics = self.evaluate("test")
        self.log("test: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()) + f" (best epoch {self.best['epoch']})")
        return metrics

    def _write_metrics(self, test_metrics: dict | None, complete: bool) -> None:
        report = {
            "method": self.config.method,
            "complete": complete,
            "epochs": self.epoch,
            "best_epoch": self.best["epoch"],
            "best_val_mae": None if math.isinf(self.best["val_mae"]) else self.best["val_mae"],
            "test": test_metrics,
            "history": self.history,
            "notes": self.notes,
        }
        write_text_atomic(self.out_dir / "metrics.json", json.dumps(report, indent=2) + "\n")


def _shown(path: Path) -> str:
    """A path for messages: relative (``../runs/...`` from a notebook) when it lies under the working
    folder or its parent, so that logs and committed notebooks hold no absolute paths; else as given."""
    path, here = Path(path).resolve(), Path.cwd().resolve()
    if path.is_relative_to(here) or path.is_relative_to(here.parent):
        return os.path.relpath(path, here)
    return str(path)


def check_compatible(state: dict, config: Config, age_labels: AgeLabels, path) -> None:
    """Refuse to continue a checkpoint with another method, other settings or other age labels."""
    if state.get("method") != config.method:
        raise CheckpointError(f"{path} was trained with method {state.get('method')!r}, not {config.method!r}.")
    # settings added since the checkpoint was written take their defaults (config_from_dict fills them in)
    try:
        saved = config_to_dict(config_from_dict(state["config"]))
    except ValueError:  # a setting that no longer exists: listed as a difference below
        saved = state["config"]
    differences = [k for k in _config_differences(saved, config_to_dict(config)) if k not in RESUMABLE_CHANGES]
    if differences:
        raise CheckpointError(
            f"{path} was written with other settings ({', '.join(differences)}); continue it with the same "
            f"configuration (only {', '.join(RESUMABLE_CHANGES)} may change)."
        )
    saved = torch.as_tensor(state["age_labels"])
    if not torch.equal(saved, age_labels.values):
        raise CheckpointError(f"{path} was trained with other age labels ({len(saved)} labels vs {len(age_labels)}); "
                              "is it the same data set?")


def train(config: Config, data=None, out_dir=None, progress: bool = True, resume: bool = False,
          verbose: bool | None = None) -> TrainResult:
    """Train ``config.method`` as ``config`` says; return the best model, its history and test metrics.

    data: None (built from ``config.data``), a :class:`DataSplits`, a PreparedData or
    {"train", "val", "test": FaceDataset}. out_dir: where config.toml, last.pt,
    best.pt and metrics.json go (None: nothing is written). resume: continue the run
    in ``out_dir`` from its last.pt (same numbers as an uninterrupted run on the CPU).
    progress: progress bars with the loss and running MAE; verbose: a line per epoch
    and the test metrics (default: as ``progress``). While it runs, ``out_dir`` is
    locked (``agekit._io.folder_lock``): a second training into the same folder
    raises ``FolderBusy`` instead of mixing checkpoints.
    Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    writes = out_dir is not None and distributed.from_environment().is_main
    with folder_lock(out_dir, "training run") if writes else contextlib.nullcontext():
        if writes:
            remove_stale_temps(out_dir, RUN_FILES)
        return Trainer(config, data=data, out_dir=out_dir, progress=progress, resume=resume, verbose=verbose).fit()


# ----------------------------------------------------------------------------- trained models


def train_or_resume(config: Config, out_dir, data=None, progress: bool = False,
                    verbose: bool | None = None) -> tuple[TrainResult, str]:
    """Train into ``out_dir``, reusing the run already there when it fits; returns (result, what happened).

    What happened is "trained" (nothing there), "resumed" (the run there was continued, or
    only re-tested when it had finished) or "trained again" (the run there had other
    settings or other data: it is replaced). Lessons use it to share runs in ``runs/``.
    """
    out_dir = Path(out_dir)
    if (out_dir / "last.pt").is_file():
        try:
            return train(config, data=data, out_dir=out_dir, progress=progress, verbose=verbose, resume=True), "resumed"
        except CheckpointError as error:
            warnings.warn(f"{_shown(out_dir)} holds another run, so it is trained again: {error}", stacklevel=2)
            return train(config, data=data, out_dir=out_dir, progress=progress, verbose=verbose), "trained again"
    return train(config, data=data, out_dir=out_dir, progress=progress, verbose=verbose), "trained"


def finished_run(folder) -> bool:
    """True when ``folder`` holds a complete run: ``best.pt`` and a metrics.json saying it reached its last epoch.

    Lessons use it to reuse what an earlier lesson trained, and to train only when nothing is there.
    """
    folder = Path(folder)
    try:
        report = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        return (folder / "best.pt").is_file() and report.get("complete") is True
    except (OSError, ValueError, AttributeError):
        return False


def load_trained(path, device="auto", data: DataSplits | None = None) -> TrainResult:
    """A :class:`TrainResult` rebuilt from a checkpoint (``best.pt`` or ``last.pt``), ready to predict.

    The history comes from the checkpoint, the test metrics from the run's
    metrics.json when it describes the same best epoch (else None); ``data`` is
    attached as given. Lets a notebook load a finished run instead of training again.

    Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    configure_threads()
    state = load_checkpoint(path)
    for key in ("config", "age_labels", "model", "method", "eval_state"):
        if key not in state:
            raise CheckpointError(f"{path} lacks {key!r}; it was not written by agekit's trainer.")
    config = config_from_dict(state["config"])
    labels = AgeLabels(torch.as_tensor(state["age_labels"]))
    device = resolve_device(device)
    method = make_method(config, labels, device)
    model = method.build_model()
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"{path} does not fit the model its configuration describes: {first}") from None
    method.load_eval_state(state["eval_state"])
    history = list(state.get("history", []))
    best = state.get("best", {}).get("epoch", state.get("epoch", 0))
    test_metrics = _saved_test_metrics(path, best)
    saved = state.get("data_fingerprint")
    if data is not None and saved is not None and saved != data_fingerprint(as_splits(data)):
        warnings.warn(f"{_shown(Path(path))} was trained on other data than the data given (the data set or the "
                      "synthetic generator changed, or these are other data); its saved test metrics are dropped.",
                      stacklevel=2)
        test_metrics = None
    normalization = state.get("normalization", DEFAULT_NORMALIZATION)  # absent before it was recorded
    model = prepare_model(model, device, use_channels_last(device, config.train.channels_last))
    return TrainResult(model.eval(), method, config, labels, history, test_metrics,
                       best, Path(path).parent, data, list(state.get("notes", [])), normalization)


def save_model_checkpoint(model: nn.Module, path, config: Config, normalization: str,
                          notes: list[str] | tuple = ()) -> Path:
    """Write a model trained elsewhere (e.g. converted from another code base) as an agekit checkpoint.

    ``config`` must describe ``model`` (method, variant, backbone, image size);
    ``normalization`` is its input scaling. :func:`load_trained`, ``agekit eval`` and
    ``agekit predict`` read the file; it holds no optimiser state, so it starts new
    runs' evaluation, not a ``--resume``. RAPL models are saved without references
    (prediction uses the EVR age).
    """
    from agekit.models import RAPLNet
    from agekit.normalization import check_normalization

    net = unwrap(model)
    if config.method != "rapl" or not isinstance(net, RAPLNet):
        raise TypeError(f"save_model_checkpoint writes RAPL models, got method {config.method!r} and "
                        f"{type(net).__name__}.")
    state = {
        "method": config.method,
        "config": config_to_dict(config.validate()),
        "age_labels": net.age_values.detach().cpu().clone(),
        "epoch": 0,
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "eval_state": {"references": None},
        "history": [],
        "best": {"epoch": 0},
        "notes": list(notes),
        "normalization": check_normalization(normalization),
    }
    return save_checkpoint(state, path)


def _saved_test_metrics(checkpoint, best_epoch: int) -> dict | None:
    """The test metrics in the run's metrics.json, when it belongs to this best model."""
    report_path = Path(checkpoint).parent / "metrics.json"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("best_epoch") != best_epoch or not report.get("complete"):
        return None
    return report.get("test")


def predict(model_or_result, dataset: FaceDataset, batch_size: int | None = None, device=None,
            references: torch.Tensor | None = None, gallery=None, k: int = 20,
            image_size: int | None = None, normalization: str = DEFAULT_NORMALIZATION) -> dict:
    """Predictions for every face of ``dataset``, as a dict of CPU tensors in dataset order.

    model_or_result: a :class:`TrainResult` (everything is taken from it), or a bare
    RAPLNet / SiameseNet. Keys: RAPL: "age" [N], "features" [N, c], with GP "gender"
    [N] and "female_prob" [N], with references "position_age" [N]. Siamese:
    "embeddings" [N, N_a], "features", "gender_embeddings" (multi-task), and with a
    gallery "age" (kNN) and "gender" (kNN vote). ``normalization`` (bare models only; a
    TrainResult brings its own) is the input scaling of :mod:`agekit.normalization`.
    Taught in ``notebooks/06_rapl_training.ipynb`` and ``notebooks/07_siamese_metric_learning.ipynb``.
    """
    if isinstance(model_or_result, TrainResult):
        result = model_or_result
        model, method = result.model, result.method
        device = next(model.parameters()).device if device is None else resolve_device(device)
        batch_size = batch_size or result.config.train.eval_batch_size
        channels_last = use_channels_last(device, result.config.train.channels_last)  # the layout of training
        out = run_outputs(method.outputs, prepare_model(model, device, channels_last), dataset, batch_size, device,
                          result.config.data.image_size, amp_dtype(device, result.config.train.amp), channels_last,
                          normalization=result.normalization)
        return {name: value.cpu() for name, value in method.finish(out).items()}
    model = model_or_result
    if not isinstance(model, nn.Module):
        raise TypeError(f"predict needs a TrainResult or a model, got {type(model).__name__}.")
    device = next(model.parameters()).device if device is None else resolve_device(device)
    batch_size = batch_size or 256
    from agekit.models import RAPLNet

    if isinstance(unwrap(model), RAPLNet):
        refs = None if references is None else references.to(device)
        out = run_outputs(lambda m, x: rapl_outputs(m, x, refs), model.to(device), dataset, batch_size, device,
                          image_size, normalization=normalization)
    else:
        out = run_outputs(siamese_outputs, model.to(device), dataset, batch_size, device, image_size,
                          normalization=normalization)
        if gallery is not None:
            from agekit.knn import Gallery
            from agekit.training.methods import SiameseGallery

            if isinstance(gallery, Gallery):
                gallery = SiameseGallery(gallery)
            out = gallery.predict(out, k)
    return {name: value.cpu() for name, value in out.items()}
