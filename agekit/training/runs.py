"""A run's folder: what it holds, whether it can be continued or reused, and loading what it trained.

A run in ``out_dir`` writes ``config.toml``, ``last.pt``, ``best.pt`` (:mod:`agekit.training.checkpoint`),
``metrics.json`` (the history, the test metrics and a reproducibility block) and
``metrics.csv`` (one row per epoch).

    result, how = train_or_resume(config, "runs/rapl")   # "trained", "resumed" or "trained again"
    finished_run("runs/rapl")                              # True once it reached its last epoch
    result = load_trained("runs/rapl/best.pt")             # ready to predict

Taught in ``notebooks/06_rapl_training.ipynb``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import warnings
from pathlib import Path

import torch
from torch import nn

from agekit._io import atomic_write_text
from agekit.config import Config, config_from_dict, config_to_dict
from agekit.data.labels import AgeLabels
from agekit.device import configure_threads, prepare_model, resolve_device, use_channels_last
from agekit.normalization import DEFAULT as DEFAULT_NORMALIZATION
from agekit.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_scheduler_state,
    restore_rng,
    save_checkpoint,
)
from agekit.training.data import DataSplits, data_fingerprint
from agekit.training.inference import TrainResult
from agekit.training.methods import make_method, unwrap

# Settings that may differ between a run and its continuation; anything else must match.
RESUMABLE_CHANGES = ("train.epochs", "train.stop_after", "train.device", "train.eval_batch_size",
                     "train.amp", "train.channels_last")
RUN_FILES = ("config.toml", "last.pt", "best.pt", "metrics.json", "metrics.csv")  # what a run writes into its folder


def shown(path: Path) -> str:
    """A path for messages: relative (``../runs/...`` from a notebook) when it lies under the working
    folder or its parent, so that logs and committed notebooks hold no absolute paths; else as given."""
    path, here = Path(path).resolve(), Path.cwd().resolve()
    if path.is_relative_to(here) or path.is_relative_to(here.parent):
        return os.path.relpath(path, here)
    return str(path)



def config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            keys += config_differences(left, right, f"{prefix}{key}.")
        elif left != right:
            keys.append(f"{prefix}{key}")
    return keys




def check_compatible(state: dict, config: Config, age_labels: AgeLabels, path) -> None:
    """Refuse to continue a checkpoint with another method, other settings or other age labels."""
    if state.get("method") != config.method:
        raise CheckpointError(f"{path} was trained with method {state.get('method')!r}, not {config.method!r}.")
    # settings added since the checkpoint was written take their defaults (config_from_dict fills them in)
    try:
        saved = config_to_dict(config_from_dict(state["config"]))
    except ValueError:  # a setting that no longer exists: listed as a difference below
        saved = state["config"]
    differences = [k for k in config_differences(saved, config_to_dict(config)) if k not in RESUMABLE_CHANGES]
    if differences:
        raise CheckpointError(
            f"{path} was written with other settings ({', '.join(differences)}); continue it with the same "
            f"configuration (only {', '.join(RESUMABLE_CHANGES)} may change)."
        )
    saved = torch.as_tensor(state["age_labels"])
    if not torch.equal(saved, age_labels.values):
        raise CheckpointError(f"{path} was trained with other age labels ({len(saved)} labels vs {len(age_labels)}); "
                              "is it the same data set?")



# ----------------------------------------------------------------------------- continuing a run


def restore(trainer, path: Path) -> None:
    """Put ``trainer`` where the run of checkpoint ``path`` (its ``last.pt``) stopped; checks that it may continue."""
    state = load_checkpoint(path)
    check_compatible(state, trainer.config, trainer.data.age_labels, path)
    saved = state.get("data_fingerprint")  # absent in checkpoints written before it was recorded
    if saved is not None and saved != trainer.fingerprint:
        raise CheckpointError(
            f"{path} was trained on other data (fingerprint {saved}, these data {trainer.fingerprint}): the data "
            "set or the synthetic generator changed since. Train into a new folder, or delete this one."
        )
    # a run goes on with the scaling it started with (check_compatible compared model.normalization)
    trainer.normalization = state.get("normalization", DEFAULT_NORMALIZATION)  # absent in older checkpoints
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    load_scheduler_state(trainer.scheduler, state["scheduler"])
    if trainer.scaler is not None and state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.method.load_state_dict(state["method_state"])
    trainer.method.load_eval_state(state["eval_state"])
    info = trainer.info
    if len(state["rng"]) == info.world_size:
        restore_rng(state["rng"][info.rank], trainer.generators)
    else:
        trainer.log(f"Resuming {len(state['rng'])}-process random states on {info.world_size} processes: "
                    "the run continues, but not bit for bit.")
    trainer.epoch, trainer.history, trainer.best = int(state["epoch"]), list(state["history"]), dict(state["best"])
    best_path = path.parent / "best.pt"
    if best_path.is_file():
        best = load_checkpoint(best_path)
        if best["epoch"] == trainer.best["epoch"]:
            trainer.best_state = {"model": best["model"], "eval": best["eval_state"]}
    if trainer.best_state is None and trainer.best["epoch"]:
        trainer.log(f"best.pt does not hold epoch {trainer.best['epoch']}; the best model is chosen among the "
                    "next epochs.")
        trainer.best = {"epoch": 0, "val_mae": math.inf}
    trainer.log(f"Resumed from {shown(path)} after epoch {trainer.epoch}.")


# ----------------------------------------------------------------------------- what a run records


def _git_commit(folder: Path) -> str | None:
    """The commit checked out where ``folder`` lies in a git checkout; None outside one, or if it cannot be read.

    Read from the ``.git`` files themselves (HEAD, the branch's ref, packed-refs), so
    that it needs no git program and starts no process.
    """
    for place in (folder, *folder.parents):
        git = place / ".git"
        try:
            if git.is_file():  # a worktree or submodule: "gitdir: <path>"
                git = (place / git.read_text(encoding="utf-8").split(":", 1)[1].strip()).resolve()
            if not git.is_dir():
                continue
            head = (git / "HEAD").read_text(encoding="utf-8").strip()
            if not head.startswith("ref:"):
                return head or None  # a detached HEAD holds the commit itself
            ref = head.split(":", 1)[1].strip()
            common = git / "commondir"
            roots = [git] + ([(git / common.read_text(encoding="utf-8").strip()).resolve()] if common.is_file() else [])
            for root in roots:
                if (root / ref).is_file():
                    return (root / ref).read_text(encoding="utf-8").strip() or None
                if (root / "packed-refs").is_file():
                    for line in (root / "packed-refs").read_text(encoding="utf-8").splitlines():
                        if line.endswith(" " + ref):
                            return line.split(" ", 1)[0]
            return None  # a branch without commits yet
        except (OSError, IndexError, UnicodeDecodeError):
            return None
    return None


def reproducibility(seed: int, device: torch.device) -> dict:
    """What reproducing a run needs besides its configuration: versions, seed, threads, device, git commit."""
    import agekit

    return {
        "agekit": agekit.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "seed": seed,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "git_commit": _git_commit(Path.cwd()),
    }


def describe_reproducibility(block: dict) -> str:
    """One line for the log, e.g. ``agekit 0.1.0, torch 2.13.0, python 3.11.7, seed 0, 2 threads, cpu, commit 1a2b``."""
    commit = block.get("git_commit")
    return (f"agekit {block['agekit']}, torch {block['torch']}, python {block['python']}, seed {block['seed']}, "
            f"{block['threads']} threads, {block['device']}" + (f", commit {commit[:12]}" if commit else ""))


def epochs_csv(history: list[dict]) -> str:
    """The history as CSV text: one row per epoch, one column per name that any epoch recorded."""
    columns: list[str] = []
    for record in history:
        columns += [name for name in record if name not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return text.getvalue()


def write_metrics(out_dir: Path, report: dict) -> None:
    """``metrics.json`` (``report``) and ``metrics.csv`` (its history, per epoch), each written atomically."""
    atomic_write_text(out_dir / "metrics.csv", epochs_csv(report["history"]))
    atomic_write_text(out_dir / "metrics.json", json.dumps(report, indent=2) + "\n")


def next_steps(checkpoint: Path, manifest: str = "") -> str:
    """The commands that evaluate and use the model of a finished run."""
    data = f" --data {shown(Path(manifest))}" if manifest else ""
    where = shown(checkpoint)
    return f"Next: agekit eval --checkpoint {where}{data}   |   agekit predict --checkpoint {where} FACE.png"


# ----------------------------------------------------------------------------- trained models


def train_or_resume(config: Config, out_dir, data=None, progress: bool = False,
                    verbose: bool | None = None) -> tuple[TrainResult, str]:
    """Train into ``out_dir``, reusing the run already there when it fits; returns (result, what happened).

    What happened is "trained" (nothing there), "resumed" (the run there was continued, or
    only re-tested when it had finished) or "trained again" (the run there had other
    settings or other data: it is replaced). Lessons use it to share runs in ``runs/``.
    """
    from agekit.training.trainer import train

    out_dir = Path(out_dir)
    if (out_dir / "last.pt").is_file():
        try:
            return train(config, data=data, out_dir=out_dir, progress=progress, verbose=verbose, resume=True), "resumed"
        except CheckpointError as error:
            warnings.warn(f"{shown(out_dir)} holds another run, so it is trained again: {error}", stacklevel=2)
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
    if data is not None and saved is not None and saved != data_fingerprint(DataSplits.of(data)):
        warnings.warn(f"{shown(Path(path))} was trained on other data than the data given (the data set or the "
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


