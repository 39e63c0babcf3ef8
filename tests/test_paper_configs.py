"""Each paper in its own configuration: presets, Adadelta, weights through their backbone's
loader, and input normalisation as a property of the weights, kept in every checkpoint."""

import json

import pytest
import torch
from torch import nn

from test_pretrained import _to_poster_pp

from agekit.cli import main
from agekit.config import apply_overrides, config_to_dict, preset
from agekit.data.dataset import normalize
from agekit.models import IRSmall
from agekit.models.inception import InceptionV3
from agekit.models.pretrained import load_pretrained
from agekit.normalization import normalize_as
from agekit.training import load_trained, predict, train
from agekit.training.checkpoint import load_checkpoint, save_checkpoint
from agekit.training.trainer import Trainer, load_data, make_optimizer


# ----------------------------------------------------------------------------- presets


def test_siamese_gpu_preset_is_jeong_et_al():
    config = preset("gpu", "siamese").validate()
    assert (config.model.backbone, config.data.image_size, config.train.batch_size) == ("inception_v3", 227, 128)
    assert (config.optim.name, config.optim.lr, config.optim.weight_decay, config.optim.milestones) == \
        ("adadelta", 1.0, 0.0, [])
    assert config.train.epochs == 275 and config.data.augment is False
    s = config.siamese
    assert (s.age_dim, s.gender_dim, s.dropout, s.k, s.gender) == (70, 10, 0.5, 20, True)


def test_gpu_ir50_is_rapls_setting_for_both_methods():
    rapl = preset("gpu", "rapl")
    for method in ("rapl", "siamese"):
        config = config_to_dict(preset("gpu_ir50", method))
        expected = config_to_dict(rapl)
        assert config["preset"] == "gpu_ir50" and config["method"] == method
        for section in ("data", "model", "optim", "train"):
            assert config[section] == expected[section], section
    assert (rapl.model.backbone, rapl.data.image_size, rapl.optim.name, rapl.optim.lr, rapl.train.epochs) == \
        ("ir50", 112, "adam", 1e-5, 30)


def test_adadelta_step_is_zeilers_rule():
    weight = nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = make_optimizer([weight], preset("gpu", "siamese").optim)
    grad = torch.tensor([2.0, 0.5])
    weight.grad = grad.clone()
    optimizer.step()
    rho, eps = 0.95, 1e-6
    square = (1 - rho) * grad**2  # E[g^2] after one step, from 0
    update = (0 + eps) ** 0.5 / (square + eps) ** 0.5 * grad  # RMS[dx] / RMS[g] * g
    torch.testing.assert_close(weight.detach(), torch.tensor([1.0, -2.0]) - update)


# ----------------------------------------------------------------------------- normalisation


def test_normalize_as_computes_both_scalings():
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(normalize_as(x, "symmetric"), normalize(x))  # bit for bit what agekit always did
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for c in range(3):
        torch.testing.assert_close(normalize_as(x, "imagenet")[:, c], (x[:, c] - mean[c]) / std[c])
    with pytest.raises(ValueError, match="symmetric"):
        normalize_as(x, "caffe")


@pytest.fixture(scope="module")
def imagenet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("imagenet")
    config = apply_overrides(preset("smoke", "rapl"), {"model.normalization": "imagenet", "train.epochs": 1})
    return train(config, out_dir=out, progress=False), out


def test_checkpoints_record_the_normalization_and_prediction_applies_it(imagenet_run):
    result, out = imagenet_run
    assert result.normalization == "imagenet" and load_checkpoint(out / "best.pt")["normalization"] == "imagenet"
    loaded = load_trained(out / "best.pt", device="cpu")
    assert loaded.normalization == "imagenet"
    test = load_data(result.config).test
    from_checkpoint = predict(loaded, test)["age"]
    by_hand = predict(loaded.model, test, references=loaded.references, normalization="imagenet")["age"]
    symmetric = predict(loaded.model, test, references=loaded.references, normalization="symmetric")["age"]
    torch.testing.assert_close(from_checkpoint, by_hand)
    assert (from_checkpoint - symmetric).abs().max() > 1e-3


def test_old_checkpoints_without_normalization_load_and_resume_as_symmetric(imagenet_run, tmp_path):
    result, out = imagenet_run
    for name in ("best.pt", "last.pt"):
        state = load_checkpoint(out / name)
        del state["normalization"], state["config"]["model"]["normalization"]  # as written before it existed
        state.pop("format"), state.pop("version")
        save_checkpoint(state, tmp_path / name)
    assert load_trained(tmp_path / "best.pt", device="cpu").normalization == "symmetric"
    old = apply_overrides(preset("smoke", "rapl"), {"train.epochs": 2})
    resumed = train(old, out_dir=tmp_path, progress=False, resume=True)
    assert len(resumed.history) == 2 and resumed.normalization == "symmetric"
    with pytest.raises(ValueError, match=r"other settings \(model.normalization\)"):
        train(apply_overrides(old, {"model.normalization": "imagenet"}), out_dir=tmp_path, progress=False,
              resume=True)


@pytest.mark.parametrize("layout, expected", [("face.evoLVe", "symmetric"), ("POSTER++", "imagenet")])
def test_auto_normalization_follows_the_ir_weights_source(tmp_path, layout, expected):
    torch.manual_seed(4)
    state = IRSmall().state_dict()
    path = tmp_path / "ir.pth"
    torch.save(_to_poster_pp(state, (1, 1, 2)) if layout == "POSTER++" else state, path)
    config = apply_overrides(preset("smoke", "rapl"), {"model.pretrained": str(path)})
    trainer = Trainer(config, progress=False)
    assert trainer.normalization == expected
    assert any(f"{expected} (that of {layout} weights)" in note for note in trainer.notes)
    for key, value in state.items():
        assert torch.equal(trainer.model.backbone.state_dict()[key], value), key


# ----------------------------------------------------------------------------- Inception V3 weights


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    """A state dict in torchvision's inception_v3 layout (classifier and auxiliary head included)."""
    torch.manual_seed(2)
    model = InceptionV3(num_classes=1000, aux_logits=True)
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("weights") / "inception_v3_google.pth"
    torch.save(state, path)
    return path, state


def _tiny_paper_run(extra=()):
    return ["--method", "siamese", "--preset", "gpu", "--device", "cpu", "--no-progress",
            "--set", "data.n=24", "--set", "train.batch_size=4", "--set", "train.eval_batch_size=8",
            "--set", "train.epochs=1", "--set", "siamese.k=3", *extra]


def test_siamese_paper_preset_trains_from_torchvision_inception_weights(capsys, tmp_path, torchvision_file):
    path, state = torchvision_file
    code = main(["train", "--out", str(tmp_path / "run"), *_tiny_paper_run(["--set", f"model.pretrained={path}"])])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "torchvision Inception V3 layout" in out + err
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["config"]["model"]["backbone"] == "inception_v3" and checkpoint["normalization"] == "symmetric"
    group = checkpoint["optimizer"]["param_groups"][0]
    assert (group["rho"], group["eps"], group["lr"]) == (0.95, 1e-6, 1.0)  # Adadelta
    assert checkpoint["history"][0]["train_images"] > 0 and json.loads(out.strip().splitlines()[-1])["test"]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_inception_weights_land_in_the_siamese_backbone(tmp_path, torchvision_file, suffix):
    path, state = torchvision_file
    if suffix == ".safetensors":
        safetensors_torch = pytest.importorskip("safetensors.torch")
        path = tmp_path / "inception.safetensors"
        safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    from agekit.models.siamese import SiameseNet

    model = SiameseNet("inception_v3")
    loaded = load_pretrained(model, path)
    assert (loaded.source, loaded.normalization) == ("torchvision", "symmetric")
    for key, value in model.backbone.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, state[key]), key


def test_a_file_for_the_other_backbone_names_the_expected_layout(capsys, tmp_path, torchvision_file):
    ir_file = tmp_path / "ir.pth"
    torch.save(IRSmall().state_dict(), ir_file)
    code = main(["train", "--out", str(tmp_path / "a"), *_tiny_paper_run(["--set", f"model.pretrained={ir_file}"])])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "torchvision's inception_v3 state dict" in err and "model.backbone=ir50" in err
    with pytest.raises(ValueError, match="IR-50 state dict.*model.backbone=inception_v3"):
        load_pretrained(IRSmall(), torchvision_file[0])
