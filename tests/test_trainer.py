"""The training loop at the smoke preset: determinism, exact resume, hooks, prediction."""

import copy
import json
import math

import pytest
import torch

from agekit.config import apply_overrides, preset
from agekit.data import BatchAugment, FaceDataset
from agekit.training import CheckpointError, finished_run, load_trained, predict, train, train_or_resume
from agekit.training.methods import RAPLMethod, adapt_to_data
from agekit.training.trainer import data_fingerprint, load_data, prepare_images

SMOKE = preset("smoke", "rapl")


@pytest.fixture(scope="module")
def rapl_run(tmp_path_factory):
    counts = []
    original = RAPLMethod.after_batch

    def counting(self, output, ages):
        counts.append((self.references is not None, len(ages)))
        original(self, output, ages)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RAPLMethod, "after_batch", counting)
        out = tmp_path_factory.mktemp("rapl")
        result = train(SMOKE, out_dir=out, progress=False)
    return result, out, counts


@pytest.fixture(scope="module")
def siamese_run():
    return train(preset("smoke", "siamese"), progress=False)


def _numbers(history):
    return [{k: v for k, v in h.items() if "seconds" not in k} for h in history]


def test_same_seed_gives_the_same_numbers(rapl_run):
    first = rapl_run[0]
    again = train(SMOKE, progress=False)
    assert again.test_metrics == first.test_metrics
    assert _numbers(again.history) == _numbers(first.history)
    other = train(apply_overrides(SMOKE, ["train.seed=1", "train.epochs=1"]), progress=False)
    assert other.history[0]["loss"] != first.history[0]["loss"]


def test_resumed_run_equals_the_uninterrupted_one(rapl_run, tmp_path):
    first, _, _ = rapl_run
    stopped = train(apply_overrides(SMOKE, ["train.stop_after=1"]), out_dir=tmp_path, progress=False)
    assert stopped.test_metrics is None and len(stopped.history) == 1
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["complete"] is False and report["test"] is None
    resumed = train(SMOKE, out_dir=tmp_path, progress=False, resume=True)
    assert resumed.test_metrics == first.test_metrics  # bitwise on the CPU
    assert _numbers(resumed.history) == _numbers(first.history)
    for (name, a), b in zip(first.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(resumed.references, first.references)


def test_finished_run_needs_best_pt_and_a_complete_report(rapl_run, tmp_path):
    _, out, _ = rapl_run
    assert finished_run(out)
    stopped = tmp_path / "stopped"
    train(apply_overrides(SMOKE, ["train.stop_after=1"]), out_dir=stopped, progress=False)
    assert (stopped / "best.pt").is_file() and not finished_run(stopped)  # half a run is not a cache hit
    assert not finished_run(tmp_path / "nothing here")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "best.pt").write_bytes(b"")
    (broken / "metrics.json").write_text("[1, 2")  # cut off while being written by something else
    assert not finished_run(broken)
    (broken / "metrics.json").write_text('["complete"]')
    assert not finished_run(broken)


def test_train_or_resume_reuses_a_fitting_run_and_replaces_another(rapl_run, tmp_path):
    first, _, _ = rapl_run
    fresh, how = train_or_resume(SMOKE, tmp_path)
    assert how == "trained" and fresh.test_metrics == first.test_metrics
    again, how = train_or_resume(SMOKE, tmp_path)  # finished: only re-tested, to the same numbers
    assert how == "resumed" and again.test_metrics == first.test_metrics
    assert _numbers(again.history) == _numbers(first.history)
    other = apply_overrides(SMOKE, ["optim.lr=0.5"])
    with pytest.warns(UserWarning, match="trained again.*optim.lr"):
        replaced, how = train_or_resume(other, tmp_path)
    assert how == "trained again" and replaced.config.optim.lr == 0.5
    assert load_trained(tmp_path / "last.pt").config.optim.lr == 0.5


def test_resume_refuses_other_settings(rapl_run):
    _, out, _ = rapl_run
    with pytest.raises(ValueError, match="optim.lr"):
        train(apply_overrides(SMOKE, ["optim.lr=0.5"]), out_dir=out, progress=False, resume=True)


def test_resume_refuses_other_data(rapl_run):
    _, out, _ = rapl_run
    data = load_data(SMOKE)
    assert data_fingerprint(data) == data_fingerprint(load_data(SMOKE))  # the same faces, the same fingerprint
    changed = copy.deepcopy(data)
    changed.test.images[len(changed.test) - 1] += 1  # one pixel-level change in the last test face
    assert data_fingerprint(changed) != data_fingerprint(data)
    with pytest.raises(CheckpointError, match="trained on other data"):
        train(SMOKE, data=changed, out_dir=out, progress=False, resume=True)


def test_loading_a_run_with_other_data_warns_and_drops_its_test_metrics(rapl_run):
    first, out, _ = rapl_run
    same = load_trained(out / "best.pt", device="cpu", data=load_data(SMOKE))
    assert same.test_metrics == first.test_metrics
    changed = copy.deepcopy(load_data(SMOKE))
    changed.train.ages[0] += 1
    with pytest.warns(UserWarning, match="trained on other data"):
        other = load_trained(out / "best.pt", device="cpu", data=changed)
    assert other.test_metrics is None


def test_history_and_the_rapl_schedule(rapl_run):
    result, out, counts = rapl_run
    train_size = len(result.data.train)
    first, second = result.history
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert first["lr"] == pytest.approx(1e-3) and second["lr"] == pytest.approx(1e-4)  # milestone at epoch 1
    # the position branch is off in epoch 1 (no references yet) and on from epoch 2
    assert "loss_position" not in first and "loss_position" in second
    assert first["loss"] == pytest.approx(first["loss_age"] + first["loss_gender"], rel=1e-6)
    assert second["loss"] == pytest.approx(second["loss_age"] + second["loss_gender"] + second["loss_position"], rel=1e-6)
    # every training face fed the reference bank in each epoch
    per_epoch = {flag: sum(n for f, n in counts if f == flag) for flag in (False, True)}
    assert per_epoch == {False: train_size, True: train_size} and first["train_images"] == train_size
    for key in ("val_mae", "val_cs5", "val_rmse", "val_gender_acc", "train_mae", "seconds"):
        assert math.isfinite(first[key])
    assert "val_confidence5" in second and result.references.shape == (len(result.age_labels), 64)
    assert json.loads((out / "metrics.json").read_text())["test"] == result.test_metrics


def test_predictions_reproduce_the_test_metrics(rapl_run):
    result = rapl_run[0]
    test = result.data.test
    out = predict(result, test)
    ages, truth = out["age"].tolist(), test.ages.tolist()
    errors = [abs(a - t) for a, t in zip(ages, truth)]
    assert sum(errors) / len(errors) == pytest.approx(result.test_metrics["mae"], rel=1e-9)
    assert 100 * sum(e <= 5 for e in errors) / len(errors) == pytest.approx(result.test_metrics["cs5"])
    agree = [abs(a - p) <= 5 for a, p in zip(ages, out["position_age"].tolist())]  # eq. 12, t = 5
    assert 100 * sum(agree) / len(agree) == pytest.approx(result.test_metrics["confidence5"])
    right = [g == t for g, t in zip(out["gender"].tolist(), test.genders.tolist())]
    assert 100 * sum(right) / len(right) == pytest.approx(result.test_metrics["gender_acc"])
    bare = predict(result.model, test, references=result.references)
    assert torch.equal(bare["age"], out["age"]) and torch.equal(bare["position_age"], out["position_age"])


def test_best_checkpoint_rebuilds_the_same_predictor(rapl_run):
    result, out, _ = rapl_run
    loaded = load_trained(out / "best.pt", device="cpu")
    assert loaded.best_epoch == result.best_epoch and loaded.test_metrics == result.test_metrics
    assert _numbers(loaded.history) == _numbers(result.history[:loaded.best_epoch])
    assert torch.equal(predict(loaded, result.data.test)["age"], predict(result, result.data.test)["age"])


def test_siamese_predicts_by_knn_over_the_training_gallery(siamese_run):
    result = siamese_run
    train_set, test = result.data.train, result.data.test
    gallery = predict(result.model, train_set)["embeddings"]
    assert torch.equal(result.gallery.age.embeddings, gallery)  # the best model's training embeddings
    out = predict(result, test)
    k = result.config.siamese.k
    for i in range(5):  # slow check: mean age of the k nearest under L1
        distances = [float((out["embeddings"][i] - g).abs().sum()) for g in gallery]
        nearest = sorted(range(len(distances)), key=lambda j: (distances[j], j))[:k]
        assert float(out["age"][i]) == pytest.approx(sum(int(train_set.ages[j]) for j in nearest) / k, abs=1e-4)
    assert result.test_metrics["mae"] == pytest.approx(float((out["age"] - test.ages).abs().mean()), rel=1e-6)
    bare = predict(result.model, test, gallery=result.gallery, k=k)  # a bare SiameseNet with the run's gallery
    assert torch.equal(bare["age"], out["age"]) and torch.equal(bare["gender"], out["gender"])
    assert "gender_acc" in result.test_metrics and "loss_gender" in result.history[0]


def test_data_without_gender_switches_the_gender_head_off():
    data = load_data(SMOKE)
    no_gender = {name: FaceDataset(d.images, d.ages) for name, d in
                 (("train", data.train), ("val", data.val), ("test", data.test))}
    result = train(apply_overrides(SMOKE, ["train.epochs=1"]), data=no_gender, progress=False)
    assert result.config.rapl.variant == "EVR+RAPL" and result.model.gender_head is None
    assert any("no gender labels" in note for note in result.notes)
    assert "gender_acc" not in result.test_metrics and "loss_gender" not in result.history[0]
    siamese, notes = adapt_to_data(preset("smoke", "siamese"), has_gender=False)
    assert siamese.siamese.gender is False and notes


def test_prepare_images_scales_resizes_and_augments_reproducibly():
    images = torch.tensor([0, 255], dtype=torch.uint8).repeat_interleave(8).reshape(1, 1, 4, 4).expand(2, 3, 4, 4)
    plain = prepare_images(images)
    assert plain.min() == -1 and plain.max() == 1 and plain.shape == (2, 3, 4, 4)
    assert prepare_images(images, image_size=8).shape == (2, 3, 8, 8)
    augment = BatchAugment(hflip=1.0, vflip=0, gray=0, rotation=0, sharpness=0)
    flipped = prepare_images(images, augment=augment, generator=torch.Generator().manual_seed(0))
    assert torch.equal(flipped, plain.flip(-1))
    a = prepare_images(images, augment=BatchAugment(), generator=torch.Generator().manual_seed(3))
    b = prepare_images(images, augment=BatchAugment(), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_the_loop_leaves_what_differs_between_the_methods_to_their_hooks():
    import ast
    import inspect

    from agekit.training import trainer

    tree = ast.parse(inspect.getsource(trainer))
    documented = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node)}
    words = [node.id for node in ast.walk(tree) if isinstance(node, ast.Name)]
    words += [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)]
    words += [node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    words += [node.value for node in ast.walk(tree)
              if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in documented]
    for asking in ("rapl", "siamese", "gallery", "references", "isinstance", "getattr"):
        assert not [word for word in words if asking in word.lower()], asking  # code, not the docstrings
