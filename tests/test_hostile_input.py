"""Data preparation under hostile or unusual input: paths out of the root, special files, odd names and modes."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agekit._io import LOCK_NAME, DiskFull, FolderBusy
from agekit.data import formats
from agekit.data import prepare as prepare_module
from agekit.data.formats import BAD_NAME, MISSING, NOT_REGULAR, OUTSIDE_ROOT, DatasetError
from agekit.data.images import BACKGROUND, ImageError, open_rgb, to_rgb
from agekit.data.prepare import load_face, load_prepared, prepare
from test_formats import IMDB_HEADER, MORPH_HEADER, make_agedb, make_megaage, write_csv, write_jpeg

SIZE = 8
SCRIPT = Path(__file__).resolve().parents[1] / "data_scripts" / "prepare.py"
_spec = importlib.util.spec_from_file_location("prepare_cli", SCRIPT)
_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cli)
prepare_cli = _cli.main


def run(format, root, out, **kwargs):
    kwargs.setdefault("image_size", SIZE)
    return prepare(format, root, out, progress=False, workers=2, verbose=False, **kwargs)


def skip_report(out: Path) -> dict[str, str]:
    with open(out / "skipped.csv", newline="", encoding="utf-8") as handle:
        return {row["path"]: row["reason"] for row in csv.DictReader(handle)}


def manifest_paths(out: Path) -> list[str]:
    return load_prepared(out).paths


@pytest.fixture
def secret(tmp_path):
    """A decodable image outside every root (named with an IMDb id, so IMDB-Clean rows can name it)."""
    return write_jpeg(tmp_path / "private" / "nm0000009_secret.jpg", (20, 20), seed=42)


# --- nothing outside the root is read -----------------------------------------------------------


def morph_root(base: Path, secret: Path) -> Path:
    lines = []
    for person in (1, 2, 6, 7):
        write_jpeg(base / "Album2" / f"00000{person}_00M2{person}.JPG", seed=person)
        lines.append([person, 0, "", "", "B", "M", 0, 20 + person, 0, 0, f"Album2/00000{person}_00M2{person}.JPG"])
    up = os.path.relpath(secret, base)  # ../private/...
    lines += [
        [3, 0, "", "", "W", "F", 0, 30, 0, 1, up],
        [4, 0, "", "", "W", "F", 0, 31, 0, 1, str(secret)],
        [5, 0, "", "", "W", "F", 0, 32, 0, 1, "Album2/../" + up],
    ]
    write_csv(base / "morph.csv", MORPH_HEADER + ["photo"], lines)
    return base


def imdb_root(base: Path, secret: Path) -> Path:
    lines = []
    for k, split in enumerate(("train", "valid", "test")):
        name = f"00/nm{k:07d}_rm1_2000.jpg"
        write_jpeg(base / "data" / "imdb" / name, (20, 20), seed=k)
        lines = [[name, 30 + k, "M", 1, 1, 15, 15, 0, 0, 0]]
        if split == "train":  # out of data/imdb, out of the root, and an absolute path
            for name in (os.path.relpath(secret, base / "data" / "imdb"), os.path.relpath(secret, base), str(secret)):
                lines.append([name, 30, "F", 1, 1, 15, 15, 0, 0, 0])
        write_csv(base / "csvs" / f"imdb_{split}_new.csv", IMDB_HEADER, lines)
    return base


def megaage_root(base: Path, secret: Path) -> Path:
    make_megaage(base, n_train=4, n_test=2)
    with open(base / "list" / "train_name.txt", "a") as handle:
        handle.write(f"{os.path.relpath(secret, base / 'train')}\n{secret}\n")
    with open(base / "list" / "train_age.txt", "w") as handle:
        handle.write("".join(f"{20 + k}\n" for k in range(6)))
    return base


def test_every_csv_path_must_resolve_inside_the_root(tmp_path, secret):
    """`..` and absolute paths in MORPH, IMDB-Clean and MegaAge lists are skipped as `outside root`."""
    roots = {
        "morph": morph_root(tmp_path / "MORPH", secret),
        "imdb_clean": imdb_root(tmp_path / "IMDB", secret),
        "megaage_asian": megaage_root(tmp_path / "MegaAge", secret),
    }
    secret_pixels = load_face(secret, SIZE)
    for name, root in roots.items():
        parsed = formats.get_format(name).parse(root)
        outside = [s for s in parsed.skipped if s.reason == OUTSIDE_ROOT]
        assert len(outside) >= 2, (name, parsed.skipped)
        assert all("secret" not in r.source for r in parsed.records), name
        out = tmp_path / f"out-{name}"
        summary = run(name, root, out, split="identity")
        assert summary.skipped[OUTSIDE_ROOT] == len(outside)
        store = load_prepared(out).store.read_all().numpy()
        assert not any(np.array_equal(image, secret_pixels) for image in store), name
        assert not any("secret" in p for p in manifest_paths(out))


def test_links_out_of_the_root_are_not_followed(tmp_path, secret):
    root = tmp_path / "AgeDB"
    truth = make_agedb(root)
    os.symlink(secret, root / "900_Intruder_30_m.jpg")
    os.symlink(secret.parent, root / "linked-folder")
    inside = root / "0_MariaCallas_20_m.jpg"
    os.symlink(inside, root / "901_MariaCallas_20_m.jpg")  # a link that stays inside the root is read
    summary = run("agedb", root, tmp_path / "out")
    report = skip_report(tmp_path / "out")
    assert report["900_Intruder_30_m.jpg"] == OUTSIDE_ROOT and report["linked-folder"] == OUTSIDE_ROOT
    assert report["901_MariaCallas_20_m.jpg"] == "duplicate"  # read, and found equal to its target
    assert summary.images == len(truth) and summary.skipped[OUTSIDE_ROOT] == 2


def test_resolve_inside_hand_cases(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.jpg").write_bytes(b"x")
    (tmp_path / "rootsibling.jpg").write_bytes(b"x")  # shares the prefix "root" but is outside
    assert formats.resolve_inside(root, root / "sub" / ".." / "sub" / "a.jpg")[0] == str(root / "sub" / "a.jpg")
    assert formats.resolve_inside(root, root / ".." / "rootsibling.jpg")[1] == OUTSIDE_ROOT
    assert formats.resolve_inside(root, str(root) + "sibling.jpg")[1] == OUTSIDE_ROOT
    assert formats.resolve_inside(root, root / "sub")[1] == NOT_REGULAR
    assert formats.resolve_inside(root, root / "nothing.jpg")[1] == MISSING


# --- special files and names ----------------------------------------------------------------------


def test_fifo_among_good_files_is_skipped_and_the_run_finishes(tmp_path):
    root = tmp_path / "AgeDB"
    truth = make_agedb(root)
    os.mkfifo(root / "00_Fifo_30_m.jpg")  # sorts first; opening it for reading would block forever
    (root / "01_Folder_30_m.jpg").mkdir()  # os.walk lists it as a folder, so it is simply not an image file
    summary = run("agedb", root, tmp_path / "out")
    assert skip_report(tmp_path / "out") == {"00_Fifo_30_m.jpg": NOT_REGULAR}
    assert summary.images == len(truth)


@pytest.mark.skipif(os.name != "posix", reason="file names that are not UTF-8 exist only on POSIX file systems")
def test_non_utf8_name_is_skipped_before_decoding_and_named_in_the_report(tmp_path):
    root = tmp_path / "AgeDB"
    truth = make_agedb(root)
    raw = os.fsencode(root) + b"/500_Jos\xe9_30_m.jpg"  # Latin-1 é
    write_jpeg(Path(os.fsdecode(raw)), seed=5)
    summary = run("agedb", root, tmp_path / "out")
    assert summary.images == len(truth)
    assert skip_report(tmp_path / "out") == {"500_Jos\\xe9_30_m.jpg": BAD_NAME}


def test_annotation_files_must_be_utf8_and_the_message_names_them(tmp_path):
    base = tmp_path / "MORPH"
    write_jpeg(base / "1_0.JPG")
    (base / "morph.csv").write_bytes(b"id_num,picture_num,age,gender,photo\n1,0,30,M,Jos\xe9.JPG\n")
    with pytest.raises(DatasetError, match=r"morph.csv is not UTF-8 text \(byte 0xe9 on line 2\)"):
        formats.parse_morph(base)
    make_megaage(tmp_path / "mega", n_train=2, n_test=1)
    (tmp_path / "mega" / "list" / "test_name.txt").write_bytes(b"\xff\xfe1.jpg\n")
    with pytest.raises(DatasetError, match=r"test_name.txt is not UTF-8 text \(byte 0xff on line 1\)"):
        formats.parse_megaage_asian(tmp_path / "mega")
    (tmp_path / "prepared").mkdir()
    manifest = b"index,path,age,gender,identity,split\n0,\xe9.jpg,3,,a,train\n"
    (tmp_path / "prepared" / "manifest.csv").write_bytes(manifest)
    with pytest.raises(DatasetError, match=r"manifest.csv is not UTF-8 text \(byte 0xe9 on line 2\)"):
        load_prepared(tmp_path / "prepared")


def test_a_root_that_is_a_file_is_named_as_such(tmp_path):
    write_jpeg(tmp_path / "face.jpg")
    with pytest.raises(DatasetError, match=r"is a file; pass the folder that holds the agedb images"):
        run("agedb", tmp_path / "face.jpg", tmp_path / "out")


# --- images stored as they look -------------------------------------------------------------------


def _png(image: Image.Image, **kwargs) -> io.BytesIO:
    return _file(image, "PNG", **kwargs)


def _file(image: Image.Image, format: str, **kwargs) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **kwargs)
    buffer.seek(0)
    return buffer


def _palette_with_transparency() -> io.BytesIO:
    image = Image.new("P", (6, 6), 1)
    image.putpalette([255, 255, 255, 200, 40, 40] + [0, 0, 0] * 254)  # index 0 white (transparent), 1 red
    image.paste(0, (0, 0, 3, 6))
    return _png(image, transparency=0)


def _rgba(mode: str) -> Image.Image:
    pixels = np.zeros((4, 4, 4), np.uint8)
    pixels[...] = (200, 100, 40, 255)
    pixels[:, :2, 3] = 0  # left half fully transparent (its hidden colour is still 200, 100, 40)
    image = Image.fromarray(pixels, "RGBA")
    return image if mode == "RGBA" else image.convert(mode)


# (name, file or image, expected mean RGB of the left half, of the right half); tolerance below
MODE_CASES = [
    ("16-bit grey PNG", lambda: _png(Image.fromarray(np.full((4, 4), 32768, np.uint16))), (128,) * 3, (128,) * 3),
    ("16-bit grey ramp", lambda: _png(Image.fromarray(np.tile(np.array([0, 0, 65535, 65535], np.uint16), (4, 1)))),
     (0,) * 3, (255,) * 3),
    ("palette + transparency", _palette_with_transparency, BACKGROUND, (200, 40, 40)),
    ("RGBA", lambda: _png(_rgba("RGBA")), BACKGROUND, (200, 100, 40)),
    ("LA", lambda: _png(_rgba("LA")), BACKGROUND, (123,) * 3),  # L = 0.299 R + 0.587 G + 0.114 B
    ("RGBa (premultiplied)", lambda: _rgba("RGBa"), BACKGROUND, (200, 100, 40)),
    ("PA", lambda: _rgba("PA"), BACKGROUND, (200, 100, 40)),
    ("CMYK JPEG", lambda: _file(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "JPEG", quality=95),
     (255, 0, 0), (255, 0, 0)),
    ("I 32-bit TIFF, 16-bit range", lambda: _file(Image.fromarray(np.full((4, 4), 65535, np.int32), "I"), "TIFF"),
     (255,) * 3, (255,) * 3),
    ("I 32-bit, 8-bit range", lambda: Image.fromarray(np.full((4, 4), 100, np.int32), "I"), (100,) * 3, (100,) * 3),
    ("I 32-bit, wide range", lambda: Image.fromarray(np.tile(np.array([-5, -5, 10**6, 10**6], np.int32), (4, 1)), "I"),
     (0,) * 3, (255,) * 3),
    ("F in [0, 1] TIFF", lambda: _file(Image.fromarray(np.full((4, 4), 0.5, np.float32), "F"), "TIFF"),
     (128,) * 3, (128,) * 3),
    ("F in [0, 255]", lambda: Image.fromarray(np.full((4, 4), 77.0, np.float32), "F"), (77,) * 3, (77,) * 3),
    ("F with NaN", lambda: Image.fromarray(np.tile(np.array([np.nan, np.nan, 1.0, 1.0], np.float32), (4, 1)), "F"),
     (0,) * 3, (255,) * 3),
    ("1-bit", lambda: _png(Image.fromarray(np.tile(np.array([0, 0, 1, 1], bool), (4, 1)))), (0,) * 3, (255,) * 3),
    ("L", lambda: _png(Image.new("L", (4, 4), 90)), (90,) * 3, (90,) * 3),
    ("YCbCr", lambda: Image.new("YCbCr", (4, 4), (128, 128, 128)), (128,) * 3, (128,) * 3),
    ("HSV", lambda: Image.new("HSV", (4, 4), (0, 255, 255)), (255, 0, 0), (255, 0, 0)),
    ("LAB", lambda: Image.new("LAB", (4, 4), (255, 128, 128)), (255,) * 3, (255,) * 3),
    ("La", lambda: Image.new("La", (4, 4), (200, 255)), (200,) * 3, (200,) * 3),
    ("RGBX", lambda: Image.new("RGBX", (4, 4), (10, 20, 30, 0)), (10, 20, 30), (10, 20, 30)),
]


@pytest.mark.parametrize("name, make, left, right", MODE_CASES, ids=[c[0] for c in MODE_CASES])
def test_every_pillow_mode_is_stored_as_it_looks(name, make, left, right):
    source = make()
    image = open_rgb(source) if isinstance(source, io.BytesIO) else to_rgb(source)
    assert image.mode == "RGB"
    pixels = np.asarray(image).astype(np.float64)
    width = pixels.shape[1]
    tolerance = 6 if "JPEG" in name or name == "LAB" else 1.0
    for half, expected in ((pixels[:, : width // 2], left), (pixels[:, width // 2:], right)):
        if expected is not None:
            np.testing.assert_allclose(half.reshape(-1, 3).mean(0), expected, atol=tolerance, err_msg=name)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = 255  # stored landscape: white left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = np.asarray(open_rgb(tmp_path / "phone.jpg"))
    assert upright.shape == (20, 10, 3)  # portrait as the camera meant it
    assert upright[:10].mean() > 240 and upright[10:].mean() < 15  # white top half after the rotation


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 6), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    pixels = np.asarray(open_rgb(tmp_path / "anim.gif")).reshape(-1, 3).mean(0)
    np.testing.assert_allclose(pixels, (250, 0, 0), atol=8)


def test_broken_files_raise_one_clear_line(tmp_path, monkeypatch):
    good = write_jpeg(tmp_path / "good.jpg", (30, 30)).read_bytes()
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.jpg").write_text("hello")
    Image.new("L", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > 2 x 1000: Pillow calls it a bomb
    for name, message in (("empty.jpg", "empty"), ("cut.jpg", "truncated"), ("text.jpg", "not an image"),
                          ("big.png", "decompression bomb")):
        with pytest.raises(ImageError, match=message) as caught:
            open_rgb(tmp_path / name)
        assert "\n" not in str(caught.value)


# --- Ctrl-C, locks, leftovers and full disks -------------------------------------------------------

def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def test_ctrl_c_stops_promptly_cleans_up_and_keeps_the_previous_result(tmp_path):
    root, out = tmp_path / "AgeDB", tmp_path / "out"
    make_agedb(root)
    run("agedb", root, out)
    before = folder_bytes(out)
    # Enough decoding that Ctrl-C lands in the middle of it: photos of noise (whose decoding no
    # reduced-size draft shortens), each with its own bytes after the end-of-image marker (decoders
    # ignore them), so that none is skipped as a duplicate of another.
    buffer = io.BytesIO()
    noise = np.random.default_rng(7).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    for k in range(100):
        (root / f"{1000 + k}_Many{k % 40}_{20 + k % 50}_m.jpg").write_bytes(buffer.getvalue() + f"photo {k}".encode())
    os.mkfifo(root / "00_Fifo_30_m.jpg")  # sorts first: a worker that opened it would block forever
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--format", "agedb", "--root", str(root), "--out", str(out), "--size", "64",
         "--workers", "1", "--no-progress"], stderr=subprocess.PIPE, text=True,
        # Ctrl-C's default action, even when these tests run in the background (a shell starts
        # background jobs with SIGINT ignored, and the child would inherit that)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for _ in range(3000):  # decoding has begun once the store's temporary file exists
            if list(out.glob(".images.u8.*.tmp")) or process.poll() is not None:
                break
            time.sleep(0.02)
        time.sleep(0.5)  # let the workers get going (on the FIFO too, for code that would open it)
        assert process.poll() is None, "the preparation ended before it could be interrupted"
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("prepare.py did not stop within 20 s of Ctrl-C")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert folder_bytes(out) == before  # no temporary file left, the previous manifest and store untouched


def test_a_second_preparation_into_the_same_folder_is_refused_and_a_killed_one_leaves_no_lock(tmp_path, capsys):
    root, out = tmp_path / "AgeDB", tmp_path / "out"
    make_agedb(root)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from agekit._io import folder_lock\n"
         "with folder_lock(sys.argv[1], 'preparation'):\n    print('held', flush=True); time.sleep(120)", str(out)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusy, match=rf"is in use by another preparation \(process {holder.pid}\)"):
            run("agedb", root, out)
        assert not (out / "manifest.csv").exists()
        code = prepare_cli(["--format", "agedb", "--root", str(root), "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "in use by another preparation" in err
    finally:
        holder.kill()  # like a crash: no chance to clean up
        holder.wait()
    assert (out / LOCK_NAME).exists()  # the dead process's lock file is still there ...
    assert run("agedb", root, out).images == 30  # ... but the kernel released its lock
    assert not (out / LOCK_NAME).exists()


def test_a_later_run_removes_what_killed_runs_left(tmp_path):
    root, out = tmp_path / "AgeDB", tmp_path / "out"
    make_agedb(root)
    out.mkdir()
    leftovers = [out / ".images.u8.0123456789ab.tmp", out / ".images.json.0123456789ab.tmp",
                 out / ".manifest.csv.ba9876543210.tmp"]
    with open(leftovers[0], "wb") as handle:
        handle.truncate(10**9)  # as large as a killed run's store (sparse here)
    for path in leftovers[1:]:
        path.write_text("half")
    (out / "notes.txt").write_text("mine")  # files that are not ours are left alone
    run("agedb", root, out)
    assert sorted(os.listdir(out)) == ["images.json", "images.u8", "manifest.csv", "notes.txt", "prepare.json",
                                       "skipped.csv"]


def test_a_store_without_its_data_file_says_so(tmp_path):
    make_agedb(tmp_path / "a")
    run("agedb", tmp_path / "a", tmp_path / "out")
    (tmp_path / "out" / "images.u8").unlink()
    with pytest.raises(FileNotFoundError, match=r"images.u8 is missing, though images.json describes it"):
        load_prepared(tmp_path / "out")


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    """A small tmpfs mounted at ``folder``: a disk that fills up. Mounting needs root, as CI has."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs these tests as root)")
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    with tmpfs(tmp_path / "small", "2m") as folder:
        yield folder


def test_not_enough_space_is_refused_before_decoding(tmp_path, small_disk):
    root, out = tmp_path / "AgeDB", small_disk / "out"
    make_agedb(root)
    run("agedb", root, out)  # 30 faces at 8 px fit
    before = folder_bytes(out)
    with pytest.raises(DiskFull, match=rf"{out} has [\d.]+ MiB free but the image store of 30 faces at 160 px needs"):
        run("agedb", root, out, image_size=160)  # 2.2 MiB of pixels
    assert folder_bytes(out) == before


def test_a_disk_that_fills_up_while_writing_gives_one_line_and_keeps_the_previous_result(
    tmp_path, small_disk, monkeypatch, capsys
):
    root, out = tmp_path / "AgeDB", small_disk / "out"
    make_agedb(root)
    run("agedb", root, out)
    before = folder_bytes(out)
    plenty = shutil.disk_usage(tmp_path)._replace(free=10**12)
    monkeypatch.setattr(prepare_module.shutil, "disk_usage", lambda path: plenty)  # the check passes; the disk fills
    code = prepare_cli(["--format", "agedb", "--root", str(root), "--out", str(out), "--size", "160", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"no space left in {out}" in err and "MiB" in err
    assert folder_bytes(out) == before  # no store-sized temporary file keeps the disk full
