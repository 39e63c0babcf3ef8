"""The CPU thread rule, the channels-last layout and the evaluation context of agekit.device."""

import pytest
import torch

from agekit import device as dev
from agekit.config import preset
from agekit.data import FaceDataset
from agekit.models import build_backbone
from agekit.training.trainer import Trainer, run_outputs


@pytest.fixture
def threads(monkeypatch):
    """Restore torch's thread count and the rule's memory after each test; start with no variables set."""
    before, memory = torch.get_num_threads(), dict(dev._threads)
    for name in dev.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(dev._threads, "set", None)
    monkeypatch.setitem(dev._threads, "program", False)
    monkeypatch.setitem(dev._threads, "torch_default", before)
    yield monkeypatch
    torch.set_num_threads(before)
    dev._threads.update(memory)


def test_default_is_the_usable_cores_at_most_two(threads):
    threads.setattr(dev.os, "sched_getaffinity", lambda pid: {5}, raising=False)
    assert dev.usable_cores() == 1
    assert dev.configure_threads() == 1 and torch.get_num_threads() == 1
    threads.setattr(dev.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert dev.usable_cores() == 8 and dev.default_threads() == dev.MAX_DEFAULT_THREADS == 2
    assert dev.configure_threads() == 2 and torch.get_num_threads() == 2


def test_an_explicit_choice_wins(threads):
    threads.setattr(dev.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert dev.configure_threads(3) == 3 and torch.get_num_threads() == 3  # asked for: even above the cores
    assert dev.configure_threads() == 3  # and kept by the trainer's later call without a count
    dev._threads.update(program=False, set=None)  # a fresh process with variables set
    threads.setenv("OMP_NUM_THREADS", "2")
    assert dev.configure_threads() == 2 and torch.get_num_threads() == 2
    assert dev.configure_threads() == 2  # and again
    dev._threads.update(program=False, set=None)
    threads.setenv("AGEKIT_THREADS", "1")  # agekit's own variable comes before OpenMP's
    assert dev.configure_threads() == 1


def test_a_count_the_program_set_itself_is_kept(threads):
    threads.setattr(dev.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert dev.configure_threads() == 2
    torch.set_num_threads(1)  # the program's own choice, after the rule ran
    assert dev.configure_threads() == 1 and torch.get_num_threads() == 1
    assert dev.configure_threads() == 1  # and stays on later calls


def test_a_count_set_before_agekit_was_imported_is_kept(threads):
    threads.setitem(dev._threads, "torch_default", 2)  # what torch chose at start-up
    torch.set_num_threads(1)  # the program's choice, made before agekit looked
    assert dev.configure_threads() == 1 and torch.get_num_threads() == 1


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_a_broken_variable_is_named(threads, value):
    threads.setenv("OMP_NUM_THREADS", value)
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
        dev.configure_threads()
    with pytest.raises(ValueError, match="at least 1"):
        dev.configure_threads(0)


def test_channels_last_on_cpu_and_cuda_only():
    assert dev.use_channels_last(torch.device("cpu"))
    assert dev.use_channels_last(torch.device("cuda"))
    assert not dev.use_channels_last(torch.device("mps"))
    assert not dev.use_channels_last(torch.device("cpu"), enabled=False)


def test_channels_last_model_computes_the_same_function():
    torch.manual_seed(0)
    reference = build_backbone("ir_small").eval()
    converted = dev.prepare_model(build_backbone("ir_small"), torch.device("cpu"), channels_last=True).eval()
    converted.load_state_dict(reference.state_dict())
    convs = [m.weight for m in converted.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = reference(x)
        got = converted(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_evaluation_runs_without_autograd_and_matches_no_grad():
    with dev.evaluation():
        assert torch.is_inference_mode_enabled()
    assert not torch.is_inference_mode_enabled()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    data = FaceDataset(images, torch.arange(5) + 20)
    modes = []

    def outputs(m, x):
        modes.append(torch.is_inference_mode_enabled())
        return {"y": m(x)}

    out = run_outputs(outputs, model, data, 2, torch.device("cpu"))
    assert modes == [True, True, True] and not out["y"].requires_grad
    with torch.no_grad():
        expected = model(images.float() / 255 * 2 - 1)
    assert torch.allclose(out["y"], expected, atol=1e-6)


def test_trainer_uses_channels_last_on_the_cpu_unless_switched_off(threads):
    config = preset("smoke", "rapl")
    config.train.device = "cpu"
    trainer = Trainer(config, progress=False)
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert trainer.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
    config.train.channels_last = False
    plain = Trainer(config, progress=False)
    conv = next(m for m in plain.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert not plain.channels_last and not conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_a_full_mode_lesson_applies_the_rule_and_says_the_count(threads, capsys):
    from agekit import lesson

    threads.setenv("AGEKIT_THREADS", "1")
    threads.delenv("AGEKIT_FAST", raising=False)
    namespace = {"__annotations__": {"fast": bool, "seed": int}, "fast": False, "seed": 0,
                 "In": ["", "fast: bool = False  # ...\nseed: int = 0  # ...\n"]}
    lesson.parameters(namespace)
    assert torch.get_num_threads() == 1 and "1 CPU thread(s)" in capsys.readouterr().out


def test_loading_a_checkpoint_applies_the_rule_and_keeps_the_layout(threads, tmp_path):
    from agekit.data.labels import AgeLabels
    from agekit.training import load_trained
    from agekit.training.trainer import save_model_checkpoint
    from agekit.training.methods import make_method

    config = preset("smoke", "rapl")
    model = make_method(config, AgeLabels.from_ages(torch.arange(10, 60)), torch.device("cpu")).build_model()
    path = save_model_checkpoint(model, tmp_path / "model.pt", config, "symmetric")
    threads.setenv("AGEKIT_THREADS", "1")
    loaded = load_trained(path, device="cpu")
    conv = next(m for m in loaded.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert torch.get_num_threads() == 1 and conv.weight.is_contiguous(memory_format=torch.channels_last)
