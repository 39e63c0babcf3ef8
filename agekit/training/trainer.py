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
3. evaluate on the validation split (the method prepares first: the Siamese
   method embeds the training set as its kNN gallery), then the method's
   end-of-epoch hook (RAPL selects the next epoch's references, Algorithm 1),
   then the learning-rate schedule;
4. write ``last.pt`` (and ``best.pt`` when the validation MAE improved).

At the end the best model (lowest validation MAE, as in the paper) is tested.
What differs between the methods lives in :mod:`agekit.training.methods`; the data
in :mod:`~agekit.training.data`, batched prediction in :mod:`~agekit.training.inference`,
the run folder (continuing, reusing, loading runs) in :mod:`~agekit.training.runs`.

Taught in ``notebooks/06_rapl_training.ipynb``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from agekit._io import folder_lock, remove_stale_temps
from agekit.config import Config, OptimConfig, config_to_dict, save_config
from agekit.data.augment import augmentation
from agekit.data.dataset import FaceDataset
from agekit.device import amp_dtype, autocast, configure_threads, describe, grad_scaler, use_channels_last
from agekit.normalization import DEFAULT as DEFAULT_NORMALIZATION
from agekit.training import distributed
from agekit.training.checkpoint import CheckpointError, load_checkpoint  # noqa: F401 (re-exported)
from agekit.training.checkpoint import rng_state, save_checkpoint, scheduler_state
from agekit.training.data import DataSplits, as_splits, data_fingerprint, load_data  # noqa: F401 (re-exported)
from agekit.training.inference import (  # noqa: F401 (re-exported)
    TrainResult,
    device_batches,
    place_model,
    predict,
    prediction_metrics,
    prepare_images,
    run_outputs,
)
from agekit.training.meter import EpochMeter, format_metrics
from agekit.training.methods import (  # noqa: F401 (re-exported)
    Method,
    adapt_to_data,
    make_method,
    rapl_outputs,
    siamese_outputs,
    unwrap,
)
from agekit.training.runs import (  # noqa: F401 (re-exported)
    RESUMABLE_CHANGES,
    RUN_FILES,
    check_compatible,
    describe_reproducibility,
    finished_run,
    load_trained,
    next_steps,
    reproducibility,
    restore,
    save_model_checkpoint,
    train_or_resume,
    write_metrics,
)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
        self._start_processes(config, out_dir, progress, verbose)
        seed_everything(config.train.seed)
        self.data = self._load_data(config, data)
        self.config, self.notes = adapt_to_data(config, self.data.has_gender)
        self._choose_precision()
        self.method = make_method(self.config, self.data.age_labels, self.device)
        self.model, self.net = self._build_model(config.train.seed)  # net: the model, wrapped under torchrun
        self.optimizer, self.scheduler = self._build_optimizer()
        self._make_generators()
        self._start_history()
        if resume:
            self._resume()

    # ------------------------------------------------------------------ setting up

    def _start_processes(self, config: Config, out_dir, progress: bool, verbose: bool | None) -> None:
        self.info, self.device = distributed.setup(config.train.device)
        configure_threads()
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.progress = progress and self.info.is_main
        self.verbose = (progress if verbose is None else verbose) and self.info.is_main
        if config.train.batch_size % self.info.world_size:
            raise ValueError(f"train.batch_size={config.train.batch_size} must be divisible by the "
                             f"{self.info.world_size} processes.")

    def _load_data(self, config: Config, data) -> DataSplits:
        data = load_data(config) if data is None else DataSplits.of(data)
        if len(data.train) < config.train.batch_size:
            raise ValueError(
                f"The training split has {len(data.train)} faces, fewer than train.batch_size="
                f"{config.train.batch_size}; use more data or a smaller batch."
            )
        self.fingerprint = data_fingerprint(data)
        return data

    def _choose_precision(self) -> None:
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        self.dtype = amp_dtype(self.device, self.config.train.amp)
        self.scaler = grad_scaler(self.device, self.dtype)
        self.channels_last = use_channels_last(self.device, self.config.train.channels_last)

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
        model = place_model(model, self.device, self.channels_last)
        if not self.info.enabled:
            return model, model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # RAPL's position branch is idle in epoch 1, the gender embedding when a batch lacks genders.
        return model, DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)

    def _build_optimizer(self):
        o = self.config.optim
        optimizer = make_optimizer(self.model.parameters(), o)
        return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=o.milestones, gamma=o.gamma)

    def _make_generators(self) -> None:
        # One shuffling order for all processes; augmentation differs per process.
        seed = self.config.train.seed
        self.generators = {
            "shuffle": torch.Generator().manual_seed(seed),
            "augment": torch.Generator().manual_seed(seed + 1 + 7919 * self.info.rank),
        }
        self.augment = augmentation(self.config.data.augmentation) if self.config.data.augment else None

    def _start_history(self) -> None:
        self.epoch = 0
        self.history: list[dict] = []
        self.best = {"epoch": 0, "val_mae": math.inf}
        self.best_state: dict | None = None

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
        restore(self, path)

    # ------------------------------------------------------------------ one epoch

    def _train_epoch(self) -> dict:
        t = self.config.train
        dataset, info = self.data.train, self.info
        self.net.train()
        order = torch.randperm(len(dataset), generator=self.generators["shuffle"])
        steps = -(-len(dataset) // t.batch_size)
        if len(dataset) - (steps - 1) * t.batch_size < 2 * info.world_size:
            steps -= 1  # a last batch of one face per process is dropped (batch norm needs two)
        pieces = (distributed.shard(order[s * t.batch_size:(s + 1) * t.batch_size], info) for s in range(steps))
        meter = EpochMeter()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, desc=f"epoch {self.epoch + 1}/{t.epochs}", unit="batch", leave=False,
                       dynamic_ncols=True)
        try:
            for step, batch in enumerate(device_batches(dataset, pieces, self.device), start=1):
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

    def _outputs(self, dataset: FaceDataset) -> dict:
        """The method's outputs for this process's shard of ``dataset``."""
        return run_outputs(self.method.outputs, self.model, dataset, self.config.train.eval_batch_size, self.device,
                           self.config.data.image_size, self.dtype, self.channels_last, self.info, self.normalization)

    def predict_split(self, dataset: FaceDataset) -> dict:
        """Predictions for all of ``dataset`` (gathered from every process), in dataset order."""
        local = self.method.finish(self._outputs(dataset))
        return {name: distributed.gather_cat(value, self.info) for name, value in local.items()}

    def training_outputs(self) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """The method's outputs over the whole training set (eval mode, no augmentation), its ages and genders."""
        train = self.data.train
        gathered = {name: distributed.gather_cat(value, self.info) for name, value in self._outputs(train).items()}
        return gathered, train.ages, train.genders

    def evaluate(self, split: str = "val", new_weights: bool = False) -> dict:
        """Metrics of the current weights on ``split`` ("train", "val" or "test").

        new_weights: an epoch's training pass just changed them (the method prepares afresh).
        """
        self.method.prepare_evaluation(self.training_outputs, new_weights)
        dataset = self.data.split(split)
        return prediction_metrics(self.predict_split(dataset), dataset)

    # ------------------------------------------------------------------ the run

    def fit(self) -> TrainResult:
        """Train until ``train.epochs`` (or ``train.stop_after`` epochs of this run), then test the best model."""
        t = self.config.train
        self.reproducibility = reproducibility(t.seed, self.device)
        self.log(f"Training {self.config.method} ({self.method.describe()}) on {describe(self.device, self.dtype)}"
                 + (f", {self.info.world_size} processes" if self.info.enabled else "")
                 + f"; data: {self.data.description or 'given data sets'}.")
        self.log("Reproducibility: " + describe_reproducibility(self.reproducibility))
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
            if complete:
                self.log(next_steps(self.out_dir / "best.pt", self.config.data.manifest))
        return TrainResult(self.model.eval(), self.method, self.config, self.data.age_labels, self.history,
                           test_metrics, self.best["epoch"], self.out_dir, self.data, self.notes, self.normalization)

    def _run_epoch(self) -> None:
        started = time.perf_counter()
        record = {"epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
        record.update(self._train_epoch())
        record["train_seconds"] = time.perf_counter() - started
        distributed.broadcast_buffers(self.model, self.info)
        val = self.evaluate("val", new_weights=True)
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
        val = {name.removeprefix("val_"): value for name, value in record.items() if name.startswith("val_")}
        text += "  val " + format_metrics(val, ("mae", "cs5", "gender_acc"))
        return text + f"  ({record['seconds']:.1f} s){'  *best' if improved else ''}"

    def _test(self) -> dict:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state["model"])
            self.method.load_eval_state(self.best_state["eval"])
        metrics = self.evaluate("test")
        self.log(f"test (best epoch {self.best['epoch']}): {format_metrics(metrics)}")
        return metrics

    def _write_metrics(self, test_metrics: dict | None, complete: bool) -> None:
        write_metrics(self.out_dir, {
            "method": self.config.method,
            "complete": complete,
            "epochs": self.epoch,
            "best_epoch": self.best["epoch"],
            "best_val_mae": None if math.isinf(self.best["val_mae"]) else self.best["val_mae"],
            "test": test_metrics,
            "history": self.history,
            "notes": self.notes,
            "reproducibility": self.reproducibility,
        })


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

