"""benchmarks/gpu_check.py starts and goes through every step: its dry run on the CPU."""

import importlib.util
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_trains_both_presets_runs_torchrun_and_times_both_models(tmp_path):
    out = tmp_path / "gpu.md"
    assert _load().main(["--dry-run", "--out", str(out)]) == 0
    record = out.read_text()
    assert record.startswith("# GPU check (DRY RUN on the CPU: not a GPU measurement)")
    assert "Overall: **PASS**" in record
    # both papers' presets, each with its own backbone and optimiser
    assert re.search(r"\| rapl gpu \| ir50 \| 16 \| 8 \| adam \| \d+ \(2 epochs\) \| loss_age [\d.]+ -> [\d.]+ .*\| PASS \|",
                     record)
    assert re.search(r"\| siamese gpu \| inception_v3 \| 75 \| 4 \| adadelta \| \d+ \(2 epochs\) .*\| PASS \|", record)
    # one torchrun process that joined a (gloo, on the CPU) group and used agekit's collectives
    assert re.search(r"torchrun --standalone --nproc_per_node 1 .*: PASS", record)
    assert '"backend": "gloo"' in record and '"collectives_ok": true' in record
    # eager rows measured with and without channels_last, compiled rows skipped in the dry run
    speeds = re.findall(r"\| (IR50|Inception V3) \(\w+\) \| \d+ \| \d+ \| (True|False) \| False \| (\d+) \|", record)
    assert len(speeds) == 4 and all(int(rate) > 0 for *_, rate in speeds)
    assert record.count("skipped (dry run)") == 4


def test_without_a_gpu_the_full_check_refuses_with_one_line(capsys, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _load().main(["--out", str(tmp_path / "gpu.md")]) == 2
    assert "no CUDA device" in capsys.readouterr().err and not (tmp_path / "gpu.md").exists()
