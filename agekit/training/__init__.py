"""Training: one loop for RAPL and the Siamese baseline, checkpoints, distributed helpers.

One idea per module: ``trainer`` (the loop), ``methods`` (what RAPL and the Siamese
baseline bring to it), ``data`` (the splits), ``inference`` (batched prediction),
``runs`` (a run's folder: continuing, reusing, loading), ``meter`` (an epoch's sums),
``checkpoint`` and ``distributed``.

    from agekit.config import preset
    from agekit.training import train, predict

    result = train(preset("cpu", "rapl"), out_dir="runs/rapl")
    result.test_metrics["mae"], result.history[-1]["val_mae"]
    predict(result, result.data.test)["age"]

Taught in ``notebooks/06_rapl_training.ipynb``.
"""

from agekit.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agekit.training.methods import Method, RAPLMethod, SiameseMethod, make_method
from agekit.training.trainer import (
    DataSplits,
    Trainer,
    TrainingDiverged,
    TrainResult,
    finished_run,
    load_data,
    load_trained,
    predict,
    train,
    train_or_resume,
)

__all__ = [
    "CheckpointError", "DataSplits", "Method", "RAPLMethod", "SiameseMethod", "TrainResult", "Trainer",
    "TrainingDiverged", "finished_run", "load_checkpoint", "load_data", "load_trained", "make_method", "predict",
    "save_checkpoint", "train", "train_or_resume",
]
