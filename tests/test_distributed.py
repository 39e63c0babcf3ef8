"""Training on two CPU processes (gloo) against one process.

What can be equal, and is compared here:

* sharding: the per-process pieces of every global batch concatenate back to the
  one-process batch (so one seed gives one global order);
* RAPL's references: each process collects only its own faces; the references it
  selects after gathering must equal Algorithm 1 run on the concatenation of both
  processes' features (bitwise), identical on both ranks;
* the weights stay identical on both ranks (DistributedDataParallel);
* evaluation: the predictions the two processes compute together (sharded,
  gathered) equal a one-process evaluation of the same weights up to float
  rounding (batches of other shapes round differently), the metrics each rank
  reports are those of the gathered predictions of the whole split, and the
  Siamese gallery gathered from both ranks equals one process embedding the
  whole training set. Thresholded numbers (CS5, a kNN neighbour at the k-th
  place) may flip for a face that sits exactly at the edge; at most one may.

What is *not* compared: the training trajectory of a two-process run against a
one-process run. Batch norm normalises each process's half-batch with its own
statistics, and each process draws its own augmentation, so the gradients differ
in floating point from those of the whole batch even though the batches are the
same faces.
"""

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from agekit.references import select_references
from agekit.training import distributed, load_trained, predict
from agekit.training.trainer import load_data, prediction_metrics

WORKER = textwrap.dedent("""
    import sys, warnings
    import torch
    from agekit.config import apply_overrides, preset
    from agekit.references import ReferenceBank
    from agekit.training import Trainer, distributed

    out, rank = sys.argv[1], int(sys.argv[2])
    captured = []
    original = ReferenceBank.end_epoch

    def end_epoch(self, val_mae=None, gather=None):
        features, pred, true = (torch.cat(column) for column in zip(*self._parts))
        references = original(self, val_mae=val_mae, gather=gather)
        captured.append({"features": features, "pred": pred, "true": true, "references": references.clone()})
        return references

    ReferenceBank.end_epoch = end_epoch
    warnings.simplefilter("ignore")
    saved = {"captured": captured}
    for method, epochs in (("rapl", 2), ("siamese", 1)):
        config = apply_overrides(preset("smoke", method), {"train.device": "cpu", "train.epochs": epochs})
        trainer = Trainer(config, out_dir=f"{out}/{method}", progress=False)
        result = trainer.fit()
        saved[f"{method}_test"] = result.test_metrics
        saved[f"{method}_predictions"] = trainer.predict_split(trainer.data.test)  # sharded, then gathered
        saved[f"{method}_params"] = dict(result.model.named_parameters())
    saved["gallery"] = result.gallery.age.embeddings
    torch.save(saved, f"{out}/rank{rank}.pt")
    distributed.shutdown()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    port = _free_port()
    processes = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        processes.append(subprocess.Popen([sys.executable, "-c", WORKER, str(out), str(rank)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        logs = [p.communicate(timeout=240)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, log in zip(processes, logs):
        assert p.returncode == 0, log[-3000:]
    return out, [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_shards_concatenate_to_the_global_batch():
    batch = torch.arange(10, 42)
    for world in (1, 2, 3, 4):
        pieces = [distributed.shard(batch, distributed.DistInfo(r, world)) for r in range(world)]
        assert torch.equal(torch.cat(pieces), batch)
        assert max(map(len, pieces)) - min(map(len, pieces)) <= 1
    assert distributed.gather_cat(batch) is batch  # one process: nothing to gather


def test_references_are_selected_from_both_processes(two_process_run):
    out, ranks = two_process_run
    result = load_trained(out / "rapl" / "last.pt", device="cpu")
    train_ages = sorted(load_data(result.config).train.ages.tolist())
    for epoch, (zero, one) in enumerate(zip(ranks[0]["captured"], ranks[1]["captured"])):
        features = torch.cat([zero["features"], one["features"]])
        pred = torch.cat([zero["pred"], one["pred"]])
        true = torch.cat([zero["true"], one["true"]])
        assert sorted(true.tolist()) == train_ages  # the two halves cover the training set once
        expected = select_references(features, pred, true, result.age_labels)
        assert torch.equal(zero["references"], expected), epoch
        assert torch.equal(one["references"], expected), epoch


def test_weights_agree_across_ranks(two_process_run):
    _, ranks = two_process_run
    for method in ("rapl", "siamese"):
        for name, value in ranks[0][f"{method}_params"].items():
            assert torch.equal(value, ranks[1][f"{method}_params"][name]), (method, name)


@pytest.mark.parametrize("method", ["rapl", "siamese"])
def test_sharded_evaluation_equals_one_process(two_process_run, method):
    out, ranks = two_process_run
    written = {p.name for p in (out / method).iterdir()}
    assert written == {"config.toml", "last.pt", "best.pt", "metrics.json", "metrics.csv"}
    result = load_trained(out / method / "best.pt", device="cpu")
    test = load_data(result.config).test
    single = predict(result, test)
    for rank in ranks:
        gathered = rank[f"{method}_predictions"]
        # the metrics each rank reported are those of all test faces, gathered in order
        assert rank[f"{method}_test"] == prediction_metrics(gathered, test)
        assert gathered.keys() == single.keys()
        # the same weights give the same outputs, up to float rounding between batch shapes
        continuous = "age" if method == "rapl" else "embeddings"
        torch.testing.assert_close(gathered[continuous], single[continuous], rtol=1e-5, atol=1e-4)
        # kNN ages can flip only where two neighbours tie at the k-th place: at most one face here
        assert int(((gathered["age"] - single["age"]).abs() > 1e-4).sum()) <= 1
        metrics = prediction_metrics(single, test)
        one_face = 0.0 if method == "rapl" else 90 / len(test)  # ages lie in 1..90: one flip moves MAE less
        assert rank[f"{method}_test"]["mae"] == pytest.approx(metrics["mae"], rel=1e-5, abs=one_face)
        # a face whose error sits at the 5-year edge may flip with rounding: at most one
        assert abs(rank[f"{method}_test"]["cs5"] - metrics["cs5"]) <= 100 / len(test) + 1e-9
    if method == "siamese":
        gallery = predict(result.model, load_data(result.config).train)["embeddings"]
        for rank in ranks:
            torch.testing.assert_close(rank["gallery"], gallery, rtol=1e-5, atol=1e-5)
        assert torch.equal(ranks[0]["gallery"], result.gallery.age.embeddings.cpu())  # saved with best.pt
