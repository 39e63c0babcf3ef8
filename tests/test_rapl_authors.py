"""The RAPL authors' released models: conversion to agekit, and the same EVR ages afterwards.

``AuthorsBackbone`` and ``AuthorsRAPL`` below re-implement the module structure of
the authors' code (SeoulTech-HCIRLab/Relative-Age-Position-Learning, ``model/IR50.py``
and ``model/networks.py``), with their attribute names, so their state dicts have the
authors' exact keys (``backbone.body1.0.res_layer.1.weight``, ``fc_age.weight``,
``parameter``, ...). The forward passes are theirs: nearest resize to 112 px, average
pool, softmax ages weighted by the labels, reweighting by sigmoid(R^T p).
"""

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from agekit.cli import main
from agekit.config import preset
from agekit.data.prepare import load_face, load_prepared
from agekit.models.pretrained import from_rapl_authors
from agekit.training.checkpoint import load_checkpoint
from agekit.training.trainer import as_splits, load_data, load_trained, predict, prediction_metrics
from test_pretrained import RefUnit as BottleneckIR  # their bottleneck_IR is face.evoLVe's, unit for unit

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
AGES = [16, 17, 19, 20, 22, 25, 30, 31, 40, 52, 61, 77]


class AuthorsBackbone(nn.Module):
    """Their Backbone(50, mode='ir'): input layer, body1/2/3 (3, 4, 14 units), an unused output layer."""

    def __init__(self):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.0), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512))

        def stage(c_in, depth, units):
            return nn.Sequential(*[BottleneckIR(c_in if i == 0 else depth, depth, 2 if i == 0 else 1)
                                   for i in range(units)])

        self.body1, self.body2, self.body3 = stage(64, 64, 3), stage(64, 128, 4), stage(128, 256, 14)

    def forward(self, x):
        x = F.interpolate(x, size=112)
        return self.body3(self.body2(self.body1(self.input_layer(x))))


class AuthorsRAPL(nn.Module):
    """Their IR50_EVR_AgeRM_GP (gender=True) and IR50_EVR_AgeRM (gender=False)."""

    def __init__(self, age_num, gender=True):
        super().__init__()
        self.age_num = age_num
        self.backbone = AuthorsBackbone()
        if gender:
            self.fc_gender = nn.Linear(256, 2)
        self.fc_age = nn.Linear(256, age_num)
        self.fc_feature = nn.Linear(age_num, 1)
        self.fc_pos = nn.Linear(256, age_num)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.softmax = nn.Softmax(dim=1)
        self.parameter = nn.Parameter(torch.Tensor(age_num))
        self.sigmoid = nn.Sigmoid()
        self.gender = gender

    def re_weight(self, x, refs):
        weights = self.sigmoid(refs.permute(1, 0) * self.parameter[None, :])  # [256, n]
        return x[:, :, None].repeat(1, 1, self.age_num) * weights[None, :, :]  # einops repeat in their code

    def forward(self, x, refs_feats=None, re_weighting=False):
        x = torch.flatten(self.avgpool(self.backbone(x)), 1)
        age_out = self.softmax(self.fc_age(x))
        gender_out = self.fc_gender(x) if self.gender else None
        pos_out = self.fc_pos(torch.flatten(self.fc_feature(self.re_weight(x, refs_feats)), 1)) if re_weighting else None
        return x, age_out, gender_out, pos_out


def _authors_model(gender=True, seed=0):
    torch.manual_seed(seed)
    model = AuthorsRAPL(len(AGES), gender=gender)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.75)
            elif name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.05)
            elif name == "parameter":
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
            elif name.startswith("fc_"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.2)  # spread the age softmax
    return model.eval()


@pytest.fixture(scope="module")
def authors():
    return _authors_model()


@pytest.fixture(scope="module")
def authors_file(authors, tmp_path_factory):
    path = tmp_path_factory.mktemp("authors") / "agedb.pt"
    torch.save(authors.state_dict(), path)  # as their phase.py saves it
    return path


def _their_ages(model, images01):
    """Their pipeline: ImageNet normalisation, then sum(softmax * labels)."""
    with torch.no_grad():
        _, probabilities, gender, _ = model((images01 - MEAN) / STD)
    return (probabilities * torch.tensor(AGES, dtype=torch.float32)).sum(1), gender


def test_their_key_layout_is_the_one_the_converter_names(authors):
    keys = set(authors.state_dict())
    assert {"backbone.body1.0.res_layer.1.weight", "backbone.body3.13.res_layer.4.running_var",
            "backbone.output_layer.3.weight", "fc_age.weight", "fc_gender.bias", "fc_feature.weight",
            "fc_pos.weight", "parameter"} <= keys


def test_converted_model_gives_their_evr_ages_gender_and_positions(authors, authors_file):
    model = from_rapl_authors(authors_file, AGES)
    assert model.variant == "EVR+RAPL+GP" and not model.training
    images = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    references = torch.randn(len(AGES), 256, generator=torch.Generator().manual_seed(2)).abs()
    their_ages, their_gender = _their_ages(authors, images)
    with torch.no_grad():
        _, _, _, their_positions = authors((images - MEAN) / STD, references, re_weighting=True)
        ours = model((images - MEAN) / STD, references=references)
    assert their_ages.std() > 0.1  # the check is not between two constant outputs
    torch.testing.assert_close(ours.age, their_ages, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours.gender_logits, their_gender, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours.position_logits, their_positions, atol=1e-4, rtol=1e-5)


def test_their_model_without_gender_head_and_a_state_dict_argument():
    authors = _authors_model(gender=False, seed=3)
    model = from_rapl_authors({f"module.{k}": v for k, v in authors.state_dict().items()}, torch.tensor(AGES))
    assert model.variant == "EVR+RAPL" and model.gender_head is None
    images = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model((images - MEAN) / STD).age, _their_ages(authors, images)[0],
                                   atol=1e-4, rtol=1e-5)


def test_a_wrong_number_of_ages_or_another_file_is_a_clear_error(authors, authors_file, tmp_path):
    with pytest.raises(ValueError, match="has 12 age outputs.*11 age labels were given"):
        from_rapl_authors(authors_file, AGES[:-1])
    backbone_only = tmp_path / "ir50.pt"
    torch.save(authors.backbone.state_dict(), backbone_only)
    with pytest.raises(ValueError, match="not a RAPL authors' checkpoint.*fc_age"):
        from_rapl_authors(backbone_only, AGES)
    broken = dict(authors.state_dict())
    broken["fc_pos.weight"] = torch.zeros(len(AGES), 128)
    with pytest.raises(ValueError, match="shapes that disagree.*position_fc"):
        from_rapl_authors(broken, AGES)


@pytest.fixture(scope="module")
def converted(authors_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "authors_agedb.pt"
    ages = ",".join(str(a) for a in AGES[:3]) + " " + " ".join(str(a) for a in AGES[3:])
    assert main(["convert", "rapl-authors", str(authors_file), str(out), "--ages", *ages.split()]) == 0
    return out


def test_the_converted_checkpoint_records_imagenet_normalization(converted):
    state = load_checkpoint(converted)
    assert state["normalization"] == "imagenet" and state["config"]["model"]["normalization"] == "imagenet"
    assert state["age_labels"].tolist() == AGES and state["config"]["data"]["image_size"] == 112
    result = load_trained(converted, device="cpu")
    assert result.normalization == "imagenet" and result.model.variant == "EVR+RAPL+GP"


def test_predict_on_a_converted_checkpoint_uses_imagenet_statistics(capsys, authors, converted, tmp_path):
    pixels = torch.linspace(0, 255, 150 * 120 * 3).reshape(150, 120, 3)
    pixels = ((pixels + torch.rand(pixels.shape, generator=torch.Generator().manual_seed(5)) * 90) % 256)
    path = tmp_path / "face.png"
    Image.fromarray(pixels.to(torch.uint8).numpy()).save(path)
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(converted), str(path), "--json", "--device", "cpu"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    face = torch.from_numpy(load_face(path, 112).copy())[None].float() / 255
    their_age, their_gender = _their_ages(authors, face)
    assert row["age"] == pytest.approx(float(their_age), abs=0.01)
    assert row["gender"] == ("female" if int(their_gender.argmax()) == 1 else "male")
    with torch.no_grad():  # the same face scaled to [-1, 1] would give another age: the scaling matters
        symmetric = authors((face - 0.5) / 0.5)[1] @ torch.tensor(AGES, dtype=torch.float32)
    assert abs(float(symmetric) - row["age"]) > 0.05


def test_eval_on_a_converted_checkpoint_matches_their_model(capsys, authors, converted, tmp_path):
    from test_cli_train import write_manifest  # a prepared data set at 32 px, from the smoke faces

    smoke = load_data(preset("smoke"))
    few = as_splits({name: smoke.split(name).subset(torch.arange(6)) for name in ("train", "val", "test")})
    manifest = write_manifest(tmp_path / "prepared", few)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(converted), "--data", str(manifest), "--device", "cpu", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    test = load_prepared(manifest).subset("test")
    ours = prediction_metrics(predict(load_trained(converted, device="cpu"), test), test)
    faces = test.batch(torch.arange(len(test))).images.float() / 255
    faces = F.interpolate(faces, size=(112, 112), mode="bilinear", antialias=True, align_corners=False)
    their_ages, _ = _their_ages(authors, faces)  # the trainer's resize to 112 px, then their pipeline
    assert ours["mae"] == pytest.approx(float((their_ages - test.ages.float()).abs().mean()), abs=1e-3)
    assert printed["mae"] == pytest.approx(ours["mae"], rel=1e-9)  # the command line prints the same


def test_convert_errors_are_one_line(capsys, authors_file, tmp_path):
    code = main(["convert", "rapl-authors", str(authors_file), str(tmp_path / "x.pt"), "--ages", "16-20"])
    err = capsys.readouterr().err
    assert code == 2 and "12 age outputs" in err and len(err.strip().splitlines()) == 1
    code = main(["convert", "rapl-authors", str(authors_file), str(tmp_path / "x.pt"), "--ages", "16-x"])
    assert code == 2 and "--ages" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_training_can_start_from_their_backbone(authors, authors_file):
    from agekit.config import apply_overrides
    from agekit.training.trainer import Trainer

    config = apply_overrides(preset("smoke", "rapl"), {"model.backbone": "ir50", "model.pretrained": str(authors_file),
                                                       "data.n": 60})
    trainer = Trainer(config, progress=False)
    assert trainer.normalization == "imagenet"
    assert any("RAPL authors' model" in note for note in trainer.notes)
    theirs = authors.backbone.state_dict()
    ours = trainer.model.backbone.state_dict()
    torch.testing.assert_close(ours["body.3.res_layer.1.weight"], theirs["body2.0.res_layer.1.weight"])
    torch.testing.assert_close(ours["body.20.res_layer.4.running_var"], theirs["body3.13.res_layer.4.running_var"])
    assert trainer.model.age_values.tolist() != AGES  # fresh heads on this data's own labels
