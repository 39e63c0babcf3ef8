"""Config dataclasses: presets, the TOML writer, --set overrides and their errors."""

import dataclasses

import pytest

from agekit.config import (
    PRESETS,
    Config,
    ConfigError,
    allowed_keys,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_override,
    preset,
    save_config,
    to_toml,
    tomllib,
)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("method", ["rapl", "siamese"])
def test_toml_round_trip_of_every_preset(tmp_path, name, method):
    config = preset(name, method)
    path = save_config(config, tmp_path / "config.toml")
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file is gone
    assert load_config(path) == config
    assert config_from_dict(tomllib.loads(to_toml(config_to_dict(config)))) == config


def test_toml_writer_hand_example():
    values = {"name": 'say "hi"\\ é\n', "n": 3, "x": 1e-05, "big": 1e300, "flag": False,
              "inf": float("inf"), "items": [1, 2], "floats": [0.5, 2.0], "empty": [],
              "section": {"a": 1, "inner": {"b": "c"}}}
    text = to_toml(values)
    assert text.splitlines()[:4] == ['name = "say \\"hi\\"\\\\ \\u00e9\\n"', "n = 3", "x = 1e-05", "big = 1e+300"]
    assert "[section]\na = 1\n\n[section.inner]\nb = \"c\"\n" in text
    assert tomllib.loads(text) == values  # an independent parser reads back the same values


def test_gpu_preset_is_the_papers_setting():
    config = preset("gpu", "rapl")
    assert (config.model.backbone, config.data.image_size, config.train.batch_size) == ("ir50", 112, 64)
    assert (config.optim.name, config.optim.lr, config.optim.weight_decay) == ("adam", 1e-5, 1e-2)
    assert (config.train.epochs, config.optim.milestones, config.optim.gamma) == (30, [10, 20], 0.1)


def test_smoke_and_cpu_presets_fit_a_laptop():
    smoke, cpu = preset("smoke"), preset("cpu")
    assert smoke.train.epochs == 2  # so RAPL's references switch on in epoch 2
    assert smoke.data.image_size <= 32 and smoke.data.n <= 500
    assert cpu.model.backbone == "ir_small" and cpu.data.image_size <= 48
    assert all(m < cpu.train.epochs for m in cpu.optim.milestones)


def test_overrides_are_parsed_by_the_fields_type():
    base = preset("cpu")
    changed = apply_overrides(base, ["optim.lr=3e-4", "train.epochs=5", "data.augment=false",
                                     "optim.milestones=[2, 4]", "rapl.variant=EVR", "data.fractions=0.5,0.25,0.25",
                                     'model.pretrained="a b.pth"'])
    assert changed.optim.lr == 3e-4 and isinstance(changed.optim.lr, float)
    assert changed.train.epochs == 5 and changed.data.augment is False
    assert changed.optim.milestones == [2, 4] and changed.rapl.variant == "EVR"
    assert changed.data.fractions == [0.5, 0.25, 0.25] and changed.model.pretrained == "a b.pth"
    assert base == preset("cpu")  # the original is untouched
    assert apply_overrides(base, {"optim.lr": 1}).optim.lr == 1.0  # an int is a fine float


def test_unknown_key_names_it_suggests_the_nearest_and_lists_only_its_section():
    with pytest.raises(ConfigError) as error:
        apply_overrides(preset("cpu"), ["optim.lrr=1"])
    message = str(error.value)
    assert "'optim.lrr'" in message and "Did you mean 'optim.lr'?" in message
    optim = [key.split(".")[1] for key in allowed_keys() if key.startswith("optim.")]
    assert f"The [optim] keys: {', '.join(optim)}." in message
    assert not any(key in message for key in allowed_keys() if not key.startswith("optim."))  # not all 35 keys
    with pytest.raises(ConfigError, match="Did you mean 'train.epochs'"):
        parse_override("train.epoch=3")
    with pytest.raises(ConfigError, match="'nosection.x'"):
        parse_override("nosection.x=1")
    with pytest.raises(ConfigError, match="'optim'"):
        parse_override("optim=1")  # a section is not a setting


@pytest.mark.parametrize("override, key", [
    ("train.epochs=2.5", "train.epochs"), ("train.epochs=abc", "train.epochs"), ("optim.lr=fast", "optim.lr"),
    ("data.augment=maybe", "data.augment"), ("optim.milestones=[1, x]", "optim.milestones"),
])
def test_wrong_types_name_the_key(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        apply_overrides(preset("cpu"), [override])


def test_override_without_equals_sign():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(preset("cpu"), ["train.epochs"])


def test_dict_values_are_type_checked():
    with pytest.raises(ConfigError, match="'train.amp'"):
        apply_overrides(preset("cpu"), {"train.amp": "yes"})
    with pytest.raises(ConfigError, match="'train.epochs'"):
        apply_overrides(preset("cpu"), {"train.epochs": True})


def test_partial_file_overlays_its_preset(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('method = "siamese"\npreset = "smoke"\n[optim]\nlr = 0.01\n', encoding="utf-8")
    config = load_config(path)
    expected = preset("smoke", "siamese")
    expected.optim.lr = 0.01
    assert config == expected


@pytest.mark.parametrize("text, match", [
    ("[optim]\nlr = \n", "not valid TOML"),
    ("[optimizer]\nlr = 1.0\n", "'optimizer'"),
    ("[train]\nepochs = 0\n", "train.epochs"),
    ("[rapl]\nvariant = \"EVR+XYZ\"\n", "rapl.variant"),
    ("[data]\nfractions = [0.5, 0.5, 0.5]\n", "data.fractions"),
    ('preset = "fast"\n', "preset must be one of"),  # an unknown preset is an error, not the cpu preset
    ("\xff\xfe[optim]\n", "not UTF-8"),
])
def test_bad_files_are_refused_clearly(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nowhere.toml"):
        load_config("nowhere.toml")


def test_allowed_keys_cover_every_field():
    expected = {f"{section.name}.{f.name}" for section in dataclasses.fields(Config)
                if dataclasses.is_dataclass(section.default_factory) for f in dataclasses.fields(section.default_factory)}
    assert expected | {"method", "preset"} == set(allowed_keys())


def test_device_auto_and_precision_on_this_machine(monkeypatch):
    import torch

    from agekit import device as dev

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "mps_available", lambda: False)
    assert dev.resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(dev, "mps_available", lambda: True)
    assert dev.resolve_device("auto") == torch.device("mps")  # MPS comes before the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.resolve_device("auto") == torch.device("cuda")  # and CUDA before both
    cpu = torch.device("cpu")
    assert dev.amp_dtype(cpu) is None and dev.grad_scaler(cpu, None) is None  # float32 on the CPU
    assert dev.amp_dtype(torch.device("cuda"), enabled=False) is None


@pytest.mark.parametrize("name, match", [("tpu", "device must be one of"), ("cuda", "no CUDA"), ("cuda:7", "no CUDA")])
def test_unusable_devices_are_refused(monkeypatch, name, match):
    import torch

    from agekit.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=match):
        resolve_device(name)


@pytest.mark.parametrize("backbone, side, nearest", [("ir_small", 30, "24 or 32"), ("ir50", 100, "96 or 104"),
                                                    ("ir_small", 5, "8"), ("inception_v3", 64, "75")])
def test_an_image_side_the_backbone_cannot_take_fails_at_validate(backbone, side, nearest):
    config = preset("cpu")
    config.model.backbone, config.data.image_size = backbone, side
    with pytest.raises(ConfigError) as caught:
        config.validate()
    message = str(caught.value)
    assert f"data.image_size={side}" in message and repr(backbone) in message and f"use {nearest}." in message


def test_the_sides_validate_accepts_are_the_ones_the_backbones_keep_whole():
    import torch

    from agekit.models import build_backbone

    ir = build_backbone("ir_small").eval()
    for side in range(8, 49):
        config = preset("cpu")
        config.data.image_size = side
        try:
            config.validate()
            accepted = True
        except ConfigError:
            accepted = False
        with torch.no_grad():
            grid = ir(torch.zeros(1, 3, side, side)).shape[-1]
        assert accepted == (grid * 8 == side), side  # accepted exactly when 3 halvings leave no remainder
    for name in ("smoke", "cpu", "gpu", "gpu_ir50"):
        for method in ("rapl", "siamese"):
            preset(name, method).validate()


def test_an_unknown_preset_is_an_error_not_the_cpu_preset():
    with pytest.raises(ConfigError, match="preset must be one of"):
        config_from_dict({"preset": "fast", "optim": {"lr": 0.1}})
    saved = config_to_dict(preset("smoke", "siamese"))
    assert config_from_dict({**saved, "preset": "custom"}).preset == "custom"  # a saved run's own values
