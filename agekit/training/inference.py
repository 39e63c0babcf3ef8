"""From a trained model to predictions: image preparation, batches on the device, batched outputs, ``predict``.

    predictions = predict(result, result.data.test)   # age, gender, position_age, features
    prediction_metrics(predictions, result.data.test)

Two single places serve the training loop as well: :func:`device_batches` (how batches
reach the device) and :func:`evaluation` (the context every evaluation runs in).
Taught in ``notebooks/06_rapl_training.ipynb``.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from agekit.config import EVAL_BATCH_SIZE, KNN_K, Config
from agekit.data.augment import BatchAugment
from agekit.data.dataset import FaceDataset, to_float
from agekit.data.labels import AgeLabels
from agekit.device import amp_dtype, autocast, prepare_model, resolve_device, use_channels_last
from agekit.device import evaluation as no_autograd
from agekit.metrics import confidence_score, summarize
from agekit.normalization import DEFAULT as DEFAULT_NORMALIZATION
from agekit.normalization import normalize_as
from agekit.training import distributed
from agekit.training.data import DataSplits
from agekit.training.methods import Method, bare_model_predictor


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



def prefetch(items, enabled: bool, depth: int = 2):
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


place_model = prepare_model  # the model on its device, channels-last when asked (agekit.device)


def device_batches(dataset: FaceDataset, indices, device: torch.device):
    """The batches ``dataset.batch(index)`` for each index in ``indices``, on ``device``.

    On CUDA they are pinned and read by a background thread while the GPU works.
    """
    pin = device.type == "cuda"
    batches = (dataset.batch(index) for index in indices)
    batches = (b.pin_memory() if pin else b for b in batches)
    return (b.to(device, non_blocking=pin) for b in prefetch(batches, enabled=pin))


@contextlib.contextmanager
def evaluation(model: nn.Module):
    """Eval mode under ``torch.inference_mode`` for the block; the model's training mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with no_autograd():
            yield model
    finally:
        model.train(was_training)


def run_outputs(outputs_fn, model: nn.Module, dataset: FaceDataset, batch_size: int, device: torch.device,
                image_size: int | None = None, dtype: torch.dtype | None = None, channels_last: bool = False,
                info: distributed.DistInfo | None = None, normalization: str = DEFAULT_NORMALIZATION) -> dict:
    """``outputs_fn(model, images)`` over this process's shard of ``dataset``, in order, in eval mode.

    Returns {name: tensor [k, ...]} for the k faces of the shard (all of them in one process).
    """
    index = distributed.shard(torch.arange(len(dataset)), info or distributed.DistInfo())
    chunks = (index[s:s + batch_size] for s in range(0, max(1, len(index)), batch_size))
    parts: dict[str, list] = {}
    with evaluation(model):
        for batch in device_batches(dataset, chunks, device):
            with autocast(device, dtype):
                out = outputs_fn(model, prepare_images(batch.images, image_size, channels_last=channels_last,
                                                       normalization=normalization))
            for name, value in out.items():
                parts.setdefault(name, []).append(value.float() if value.is_floating_point() else value)
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
        return self.method.eval_references

    @property
    def gallery(self):
        """The Siamese kNN gallery of training embeddings (None for RAPL)."""
        return self.method.gallery

    def predict(self, dataset: FaceDataset, batch_size: int | None = None) -> dict:
        """Predictions for every face of ``dataset``; see :func:`predict`."""
        return predict(self, dataset, batch_size=batch_size)


def predict(model_or_result, dataset: FaceDataset, batch_size: int | None = None, device=None,
            references: torch.Tensor | None = None, gallery=None, k: int = KNN_K,
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
        model, config = result.model, result.config
        outputs_fn, finish = result.method.outputs, result.method.finish
        batch_size = batch_size or config.train.eval_batch_size
        image_size, normalization = config.data.image_size, result.normalization
        amp, channels_last = config.train.amp, config.train.channels_last  # the layout it was trained in
    else:
        model = model_or_result
        if not isinstance(model, nn.Module):
            raise TypeError(f"predict needs a TrainResult or a model, got {type(model).__name__}.")
        outputs_fn, finish = bare_model_predictor(model, references, gallery, k)
        batch_size, amp, channels_last = batch_size or EVAL_BATCH_SIZE, False, False
    device = next(model.parameters()).device if device is None else resolve_device(device)
    channels_last = use_channels_last(device, channels_last)
    out = run_outputs(outputs_fn, prepare_model(model, device, channels_last), dataset, batch_size, device, image_size,
                      amp_dtype(device, amp), channels_last, normalization=normalization)
    return {name: value.cpu() for name, value in finish(out).items()}
