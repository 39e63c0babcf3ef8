"""prepare(): manifest, image store, skip report, splits, atomic writes, the CLI, and reading back."""

from __future__ import annotations

import csv
import importlib.util
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from agekit.data import prepare as prepare_module
from agekit.data.formats import AGE_RANGE, DUPLICATE, NO_METADATA, UNPARSEABLE, UNREADABLE, DatasetError
from agekit.data.prepare import load_prepared, prepare, square_region
from agekit.data.store import ImageStore, StoreWriter
from test_formats import expected_face, make_agedb, make_imdb, make_megaage, write_cacd_meta, write_jpeg

SIZE = 16
REPO = Path(__file__).resolve().parents[1]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def run(format, root, out, **kwargs):
    kwargs.setdefault("image_size", SIZE)
    return prepare(format, root, out, progress=False, workers=2, **kwargs)


def make_awkward_agedb(root: Path) -> dict:
    """make_agedb plus one file for every skip reason. Returns the truth of the good files."""
    truth = make_agedb(root)
    truncated = write_jpeg(root / "100_Truncated_30_m.jpg", (20, 20), seed=99).read_bytes()
    (root / "100_Truncated_30_m.jpg").write_bytes(truncated[: len(truncated) // 2])
    (root / "101_Garbage_30_m.jpg").write_bytes(b"this is not a jpeg")
    write_jpeg(root / "Garbage_30.jpg", seed=98)
    write_jpeg(root / "102_Methuselah_150_m.jpg", seed=97)
    shutil.copy(root / "0_MariaCallas_20_m.jpg", root / "103_MariaCallas_20_m.jpg")
    return truth


# --- the whole pipeline on AgeDB ------------------------------------------------------------


def test_agedb_manifest_store_and_skip_report(tmp_path, capsys):
    root, out = tmp_path / "AgeDB", tmp_path / "out"
    truth = make_awkward_agedb(root)
    summary = run("agedb", root, out)

    report = {row["path"]: row for row in read_csv(out / "skipped.csv")}
    assert {path: row["reason"] for path, row in report.items()} == {
        "100_Truncated_30_m.jpg": UNREADABLE, "101_Garbage_30_m.jpg": UNREADABLE, "Garbage_30.jpg": UNPARSEABLE,
        "102_Methuselah_150_m.jpg": AGE_RANGE, "103_MariaCallas_20_m.jpg": DUPLICATE,
    }
    assert "0_MariaCallas_20_m.jpg" in report["103_MariaCallas_20_m.jpg"]["detail"]
    assert summary.skipped == {UNREADABLE: 2, UNPARSEABLE: 1, AGE_RANGE: 1, DUPLICATE: 1}
    assert "unreadable image 2" in capsys.readouterr().err

    rows = read_csv(out / "manifest.csv")
    assert [row["index"] for row in rows] == [str(i) for i in range(len(truth))]
    assert {row["path"]: (int(row["age"]), int(row["gender"]), row["identity"]) for row in rows} == truth
    splits_of = {}
    for row in rows:
        splits_of.setdefault(row["identity"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits_of.values()), "a person crosses splits"
    assert {s for (s,) in splits_of.values()} == {"train", "val", "test"}
    assert summary.splits == {name: sum(r["split"] == name for r in rows) for name in ("train", "val", "test")}

    store = ImageStore.open(out)
    assert (len(store), store.image_size) == (len(truth), SIZE)
    for row in rows:
        np.testing.assert_array_equal(store[int(row["index"])].numpy(), expected_face(root / row["path"], SIZE))
    assert sorted(os.listdir(out)) == ["images.json", "images.u8", "manifest.csv", "prepare.json", "skipped.csv"]


def test_square_region_hand_examples():
    assert square_region(10, 13) == (-1, 0, 12, 13)  # 3 pixels of padding: 1 left, 2 right
    assert square_region(13, 10) == (0, -1, 13, 12)
    assert square_region(8, 8) == (0, 0, 8, 8)
    # box 12 wide, 17 high: a 17-pixel square around the box centre (9, 10.5)
    assert square_region(40, 40, (3, 2, 15, 19)) == (0, 2, 17, 19)


# --- predefined and rank splits --------------------------------------------------------------


def test_imdb_predefined_split_crops_boxes_and_warns_on_leakage(tmp_path):
    rows = make_imdb(tmp_path)
    write_jpeg(tmp_path / "data" / "imdb" / "09" / "nm0000000_rm9_x.jpg", (24, 20), seed=50)
    with open(tmp_path / "csvs" / "imdb_test_new.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(["09/nm0000000_rm9_x.jpg", 44, "M", 1, 1, 11, 9, 0, 0, 0])
    with pytest.warns(UserWarning, match=r"nm0000000 \(train, test\)"):
        summary = run("imdb_clean", tmp_path, tmp_path / "out", split="predefined")
    assert summary.leakage == {"nm0000000": ["train", "test"]}
    manifest = {row["path"]: row for row in read_csv(tmp_path / "out" / "manifest.csv")}
    store = ImageStore.open(tmp_path / "out")
    rows.append({"file": "09/nm0000000_rm9_x.jpg", "split": "test", "age": 44, "gender": 0, "box": (1, 1, 11, 9)})
    for row in rows:
        entry = manifest["data/imdb/" + row["file"]]
        assert entry["split"] == {"valid": "val"}.get(row["split"], row["split"])
        assert (int(entry["age"]), int(entry["gender"])) == (row["age"], row["gender"])
        expected = expected_face(tmp_path / "data" / "imdb" / row["file"], SIZE, row["box"])
        np.testing.assert_array_equal(store[int(entry["index"])].numpy(), expected)


def test_megaage_predefined_carves_a_seeded_val_from_train(tmp_path):
    make_megaage(tmp_path / "megaage", n_train=20, n_test=6)
    run("megaage_asian", tmp_path / "megaage", tmp_path / "a", split="predefined", seed=3)
    rows = read_csv(tmp_path / "a" / "manifest.csv")
    chosen = torch.randperm(20, generator=torch.Generator().manual_seed(3))[:2].tolist()  # 10 % of train
    by_split = {name: sorted(r["path"] for r in rows if r["split"] == name) for name in ("train", "val", "test")}
    assert by_split["val"] == sorted(f"train/{k + 1}.jpg" for k in chosen)
    assert by_split["test"] == sorted(f"test/{k}.jpg" for k in range(1, 7))
    assert len(by_split["train"]) == 18 and all(g == "" for g in (r["gender"] for r in rows))
    run("megaage_asian", tmp_path / "megaage", tmp_path / "b", split="predefined", seed=3)
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (tmp_path / "b" / "manifest.csv").read_bytes()


def test_cacd_rank_split(tmp_path):
    ranks = {"Harry_Connick_Jr.": 1, "Ann_B": 2, "Cid_C": 3, "Dee_D": 5, "Eve_E": 6, "Fay_F": 50}
    for p, name in enumerate(list(ranks) + ["Not_Listed"]):
        for k, age in enumerate((20 + p, 30 + p)):
            write_jpeg(tmp_path / "CACD2000" / f"{age}_{name}_{k + 1:04d}.jpg", seed=10 * p + k)
    with pytest.raises(DatasetError, match="celebrity2000_meta.mat"):
        run("cacd", tmp_path / "CACD2000", tmp_path / "out", split="rank")
    assert not (tmp_path / "out" / "manifest.csv").exists()
    write_cacd_meta(tmp_path / "celebrity2000_meta.mat", list(ranks), list(ranks.values()))
    run("cacd", tmp_path / "CACD2000", tmp_path / "out", split="rank")
    rows = read_csv(tmp_path / "out" / "manifest.csv")
    expected = {name: "val" if r <= 2 else "test" if r <= 5 else "train" for name, r in ranks.items()}
    assert {row["identity"]: row["split"] for row in rows} == expected
    assert len(rows) == 12
    skipped = read_csv(tmp_path / "out" / "skipped.csv")
    assert [(r["path"].split("_")[1], r["reason"]) for r in skipped] == [("Not", NO_METADATA)] * 2


def test_split_mode_must_fit_the_format(tmp_path):
    make_agedb(tmp_path / "a")
    with pytest.raises(ValueError, match="does not apply to the agedb format"):
        run("agedb", tmp_path / "a", tmp_path / "out", split="predefined")
    with pytest.raises(ValueError, match="split must be one of"):
        run("agedb", tmp_path / "a", tmp_path / "out", split="random")
    assert not (tmp_path / "out").exists()


# --- atomic writes -----------------------------------------------------------------------------


def fail_after(monkeypatch, rows: int):
    original = StoreWriter.write

    def write(self, row, image):
        if row >= rows:
            raise RuntimeError("simulated interruption")
        original(self, row, image)

    monkeypatch.setattr(StoreWriter, "write", write)


def test_interrupted_first_run_leaves_nothing(tmp_path, monkeypatch):
    make_agedb(tmp_path / "a")
    fail_after(monkeypatch, 5)
    with pytest.raises(RuntimeError, match="simulated"):
        run("agedb", tmp_path / "a", tmp_path / "out")
    assert os.listdir(tmp_path / "out") == []


def test_interrupted_rerun_keeps_the_previous_complete_result(tmp_path, monkeypatch):
    make_agedb(tmp_path / "a")
    run("agedb", tmp_path / "a", tmp_path / "out", image_size=8)
    before = {name: (tmp_path / "out" / name).read_bytes() for name in os.listdir(tmp_path / "out")}
    fail_after(monkeypatch, 5)
    with pytest.raises(RuntimeError):
        run("agedb", tmp_path / "a", tmp_path / "out", image_size=SIZE)
    after = {name: (tmp_path / "out" / name).read_bytes() for name in os.listdir(tmp_path / "out")}
    assert after == before  # no temp files, old manifest and old store still match
    assert load_prepared(tmp_path / "out").image_size == 8


def test_failure_while_publishing_leaves_no_manifest(tmp_path, monkeypatch):
    make_agedb(tmp_path / "a")
    run("agedb", tmp_path / "a", tmp_path / "out", image_size=8)
    original = os.replace

    def replace(src, dst):
        if Path(dst).name == "manifest.csv":
            raise OSError("disk full")
        original(src, dst)

    monkeypatch.setattr(prepare_module.os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        run("agedb", tmp_path / "a", tmp_path / "out", image_size=SIZE)
    names = os.listdir(tmp_path / "out")
    assert "manifest.csv" not in names and not [n for n in names if n.startswith(".")]
    with pytest.raises(FileNotFoundError, match="No manifest"):
        load_prepared(tmp_path / "out")


# --- the command line --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("prepare_cli", REPO / "data_scripts" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_cli_errors_are_one_line(tmp_path, capsys, cli):
    (tmp_path / "bad").mkdir()
    write_jpeg(tmp_path / "bad" / "no_labels_here.jpg")
    cases = [
        (["--root", str(tmp_path / "missing")], "does not exist"),
        (["--root", str(tmp_path / "bad")], "No usable agedb images"),
        (["--root", str(tmp_path / "bad"), "--split", "rank"], "does not apply"),
        (["--root", str(tmp_path / "bad"), "--size", "0"], "image_size must be at least 1"),
    ]
    for extra, message in cases:
        code = cli(["--format", "agedb", "--out", str(tmp_path / "out"), "--no-progress", *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err, err
        assert "Traceback" not in err and err.strip().count("\n") == 0 and err.startswith("error: ")
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_cli_success_prints_the_summary(tmp_path, capsys, cli):
    make_awkward_agedb(tmp_path / "a")
    code = cli(["--format", "agedb", "--root", str(tmp_path / "a"), "--out", str(tmp_path / "o"),
                "--size", "8", "--no-progress", "--max-age", "59"])
    err = capsys.readouterr().err
    assert code == 0
    assert "prepared 20 images" in err and "age out of range 11" in err and "duplicate 1" in err


# --- reading back --------------------------------------------------------------------------------


def test_load_prepared_subsets_and_mismatches(tmp_path):
    make_agedb(tmp_path / "a")
    out = tmp_path / "out"
    run("agedb", tmp_path / "a", out)
    data = load_prepared(out / "manifest.csv")
    rows = read_csv(out / "manifest.csv")
    assert len(data) == 30 and data.has_gender and data.image_size == SIZE
    assert data.ages.tolist() == [int(r["age"]) for r in rows]
    assert data.genders.tolist() == [int(r["gender"]) for r in rows]
    assert data.identities == [r["identity"] for r in rows]

    store = ImageStore.open(out)
    seen = set()
    for code, name in enumerate(("train", "val", "test")):
        part = data.subset(name)
        rows_here = torch.nonzero(data.split == code).flatten()
        assert len(part) == len(rows_here) > 0
        batch = part.batch(torch.arange(len(part)))
        assert torch.equal(batch.images, store[rows_here])
        assert torch.equal(batch.ages, data.ages[rows_here])
        people = {data.identities[i] for i in rows_here.tolist()}
        assert not people & seen
        seen |= people
    with pytest.raises(ValueError, match="split_name must be one of"):
        data.subset("valid")

    # a manifest filtered and reordered by hand still lines up with its store rows
    kept = [r for r in rows if r["split"] == "test"][::-1]
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    small = load_prepared(out)
    assert torch.equal(small.store[torch.arange(len(kept))], store[[int(r["index"]) for r in kept]])

    kept[0]["index"] = "999"
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    with pytest.raises(ValueError, match="does not match this manifest"):
        load_prepared(out)
    os.truncate(out / "images.u8", 100)
    with pytest.raises(ValueError, match="incomplete"):
        load_prepared(out)
    with pytest.raises(FileNotFoundError, match="No manifest"):
        load_prepared(tmp_path / "elsewhere")


def test_image_store_indexing_views_and_pickling(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 4, 4), dtype=np.uint8)
    writer = StoreWriter(tmp_path, capacity=7, image_size=4)
    for row, image in enumerate(images):
        writer.write(row, image)
    for temp, final in writer.finish(5):
        os.replace(temp, final)
    store = ImageStore.open(tmp_path)
    assert (len(store), store.shape, store.image_size) == (5, (5, 3, 4, 4), 4)
    assert (tmp_path / "images.u8").stat().st_size == 5 * 3 * 4 * 4
    np.testing.assert_array_equal(store[torch.tensor([4, 0, 2])].numpy(), images[[4, 0, 2]])
    np.testing.assert_array_equal(store[1:3].numpy(), images[1:3])
    np.testing.assert_array_equal(store[-1].numpy(), images[4])
    assert store[[3]].dtype == torch.uint8 and store[[3]].shape == (1, 3, 4, 4)
    view = store.take(torch.tensor([3, 1]))
    assert len(view) == 2
    np.testing.assert_array_equal(view[torch.tensor([1, 0])].numpy(), images[[1, 3]])
    np.testing.assert_array_equal(view.read_all().numpy(), images[[3, 1]])
    batch = store[torch.tensor([0])]
    batch += 1  # a copy: the store is unchanged
    np.testing.assert_array_equal(store[0].numpy(), images[0])
    copy = pickle.loads(pickle.dumps(view))
    np.testing.assert_array_equal(copy[torch.tensor([0])].numpy(), images[[3]])
    with pytest.raises(IndexError, match="range"):
        store[torch.tensor([5])]
    with pytest.raises(TypeError, match="whole numbers"):
        store[torch.tensor([0.5])]
    with pytest.raises(FileNotFoundError, match="prepare.py"):
        ImageStore.open(tmp_path / "nothing")
