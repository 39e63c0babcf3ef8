"""Parsers of the real data set layouts, on tiny files written in each exact layout.

The layout writers and the independent resize here are reused by test_prepare.py.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agekit.data import formats
from agekit.data.formats import BAD_ANNOTATION, MISSING, UNPARSEABLE, DatasetError

# --- writers of tiny files ---------------------------------------------------------------


def write_jpeg(path: Path, size=(12, 16), seed: int = 0) -> Path:
    """A small smooth random RGB JPEG of size (width, height) at ``path``."""
    rng = np.random.default_rng(seed)
    width, height = size
    coarse = rng.integers(0, 256, (max(2, height // 4), max(2, width // 4), 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=95)
    return path


def expected_face(path: Path, size: int, box=None) -> np.ndarray:
    """Independent square-pad(-crop) + bilinear resize with plain numpy indexing: uint8 [3, S, S]."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    height, width = pixels.shape[:2]
    if box is None:
        side = max(width, height)
        left, top = -((side - width) // 2), -((side - height) // 2)
    else:
        x0, y0, x1, y1 = box
        side = round(max(x1 - x0, y1 - y0))
        left, top = round((x0 + x1 - side) / 2), round((y0 + y1 - side) / 2)
    canvas = np.zeros((side, side, 3), np.uint8)
    for row in range(side):  # slow, obvious copy of every pixel inside the photo
        for col in range(side):
            y, x = top + row, left + col
            if 0 <= y < height and 0 <= x < width:
                canvas[row, col] = pixels[y, x]
    resized = Image.fromarray(canvas).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized).transpose(2, 0, 1)


AGEDB_PEOPLE = ["MariaCallas", "José Martí", "Anne_Marie Duval", "Zoë", "Bob", "Carl", "Dana", "Eve", "Finn", "Gus"]


def make_agedb(root: Path) -> dict[str, tuple[int, int, str]]:
    """Ten people x three ages; image ids count images, not people. Returns {file: (age, gender, name)}."""
    truth, image_id = {}, 0
    for p, name in enumerate(AGEDB_PEOPLE):
        for age in (20 + p, 40 + p, 60 + p):
            letter = "mf"[(p + age) % 2]
            file = f"{image_id}_{name}_{age}_{letter}.jpg"
            write_jpeg(root / file, (10 + p, 14), seed=image_id)
            truth[file] = (age, "mf".index(letter), name)
            image_id += 1
    return truth


IMDB_HEADER = ["filename", "age", "gender", "x_min", "y_min", "x_max", "y_max", "head_roll", "head_yaw", "head_pitch"]


def make_imdb(root: Path) -> list[dict]:
    """csvs/imdb_{train,valid,test}_new.csv + data/imdb/<nn>/nm..._rm....jpg with face boxes."""
    rows = []
    for split_index, split in enumerate(("train", "valid", "test")):
        lines = []
        for k in range(4):
            person = f"nm{split_index * 10 + k:07d}"
            name = f"{k:02d}/{person}_rm{100 + k}_1970-1-1_2000.jpg"
            write_jpeg(root / "data" / "imdb" / name, (24, 20), seed=split_index * 10 + k)
            box = (3 + k, 2, 15 + k, 19)  # taller than wide: squared around its centre
            lines.append([name, 30 + k, "MF"[k % 2], *box, 0.0, 0.0, 0.0])
            rows.append({"file": name, "split": split, "age": 30 + k, "gender": k % 2, "person": person, "box": box})
        write_csv(root / "csvs" / f"imdb_{split}_new.csv", IMDB_HEADER, lines)
    return rows


def write_csv(path: Path, header, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(lines)


def write_cacd_meta(path: Path, names, ranks) -> None:
    """celebrity2000_meta.mat in the real layout: struct celebrityData with name, identity, rank (n x 1)."""
    scipy_io = pytest.importorskip("scipy.io")
    cell = np.empty((len(names), 1), dtype=object)
    cell[:, 0] = names
    data = {
        "name": cell,
        "identity": np.arange(1, len(names) + 1).reshape(-1, 1),
        "rank": np.asarray(ranks).reshape(-1, 1),
        "birth": np.full((len(names), 1), 1970),
    }
    scipy_io.savemat(path, {"celebrityData": data})


def by_path(parsed):
    return {r.path: r for r in parsed.records}, {s.path: s for s in parsed.skipped}


# --- AgeDB -------------------------------------------------------------------------------


def test_agedb_names_with_spaces_accents_and_underscores(tmp_path):
    truth = make_agedb(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    for bad in ("MariaCallas_35_f.jpg", "7_Bob_35_x.jpg", "8_Bob_old_m.jpg", "9__35_m.jpg"):
        write_jpeg(tmp_path / bad)
    records, skipped = by_path(formats.parse_agedb(tmp_path))
    assert set(records) == set(truth)
    for file, (age, gender, name) in truth.items():
        assert (records[file].age, records[file].gender, records[file].identity) == (age, gender, name)
        assert records[file].source == str(tmp_path / file)
    assert records["3_José Martí_21_m.jpg"].identity == "José Martí"
    assert records["6_Anne_Marie Duval_22_m.jpg"].identity == "Anne_Marie Duval"
    # identity is the name, not the leading image id: three images per person
    assert sorted(sum(r.identity == n for r in records.values()) for n in AGEDB_PEOPLE) == [3] * 10
    assert {p: s.reason for p, s in skipped.items()} == dict.fromkeys(
        ["MariaCallas_35_f.jpg", "7_Bob_35_x.jpg", "8_Bob_old_m.jpg", "9__35_m.jpg"], UNPARSEABLE
    )


def test_agedb_decomposed_unicode_names_give_one_identity(tmp_path):
    import unicodedata

    write_jpeg(tmp_path / unicodedata.normalize("NFD", "1_Zoë_30_f.jpg"))
    write_jpeg(tmp_path / "2_Zoë_31_f.jpg", seed=1)
    records = formats.parse_agedb(tmp_path).records
    assert [r.identity for r in records] == ["Zoë", "Zoë"]


# --- AFAD ----------------------------------------------------------------------------------


def test_afad_age_gender_folders_and_person_id(tmp_path):
    base = tmp_path / "AFAD-Full"
    write_jpeg(base / "15" / "111" / "638-0.jpg")
    write_jpeg(base / "15" / "111" / "638-1.jpg", seed=1)
    write_jpeg(base / "72" / "112" / "90210-3.jpg", seed=2)
    write_jpeg(base / "30" / "113" / "1-0.jpg")  # no such gender folder
    write_jpeg(base / "old" / "111" / "2-0.jpg")  # age folder not a number
    write_jpeg(base / "31" / "112" / "photo.jpg")  # not <person>-<k>
    (base / "AFAD-Full.txt").write_text("list")
    records, skipped = by_path(formats.parse_afad(tmp_path))
    got = {p: (r.age, r.gender, r.identity) for p, r in records.items()}
    assert got == {
        "AFAD-Full/15/111/638-0.jpg": (15, 0, "638"),
        "AFAD-Full/15/111/638-1.jpg": (15, 0, "638"),
        "AFAD-Full/72/112/90210-3.jpg": (72, 1, "90210"),
    }
    assert sorted(skipped) == ["AFAD-Full/30/113/1-0.jpg", "AFAD-Full/31/112/photo.jpg", "AFAD-Full/old/111/2-0.jpg"]
    assert {s.reason for s in skipped.values()} == {UNPARSEABLE}


# --- CACD ----------------------------------------------------------------------------------


def test_cacd_names_with_dots_and_underscores_and_ranks(tmp_path):
    images = tmp_path / "CACD2000"
    files = ["45_Harry_Connick_Jr._0002.jpg", "14_Aaron_Johnson_0001.jpg", "20_Mary-Kate_Olsen_0010.jpg",
             "33_Unknown_Person_0001.jpg", "Aaron_Johnson_0003.jpg", "15_Aaron_Johnson.jpg"]
    for k, file in enumerate(files):
        write_jpeg(images / file, seed=k)
    # the .mat sits next to CACD2000/ (root's parent when --root is the image folder); a name with a space
    write_cacd_meta(tmp_path / formats.CACD_META, ["Harry_Connick_Jr.", "Aaron Johnson", "Mary-Kate_Olsen"], [1, 4, 17])
    for root in (tmp_path, images):
        records, skipped = by_path(formats.parse_cacd(root))
        prefix = "CACD2000/" if root == tmp_path else ""
        got = {p.removeprefix(prefix): (r.age, r.gender, r.identity, r.rank) for p, r in records.items()}
        assert got == {
            "45_Harry_Connick_Jr._0002.jpg": (45, -1, "Harry_Connick_Jr.", 1),
            "14_Aaron_Johnson_0001.jpg": (14, -1, "Aaron_Johnson", 4),
            "20_Mary-Kate_Olsen_0010.jpg": (20, -1, "Mary-Kate_Olsen", 17),
            "33_Unknown_Person_0001.jpg": (33, -1, "Unknown_Person", -1),
        }
        assert sorted(p.removeprefix(prefix) for p in skipped) == ["15_Aaron_Johnson.jpg", "Aaron_Johnson_0003.jpg"]


def test_cacd_without_meta_has_no_ranks(tmp_path):
    write_jpeg(tmp_path / "45_Harry_Connick_Jr._0002.jpg")
    (record,) = formats.parse_cacd(tmp_path).records
    assert (record.identity, record.rank) == ("Harry_Connick_Jr.", -1)


def test_cacd_meta_without_struct_is_a_clear_error(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    write_jpeg(tmp_path / "45_A_B_0001.jpg")
    scipy_io.savemat(tmp_path / formats.CACD_META, {"somethingElse": np.zeros(3)})
    with pytest.raises(DatasetError, match="celebrityData"):
        formats.parse_cacd(tmp_path)


# --- UTKFace -------------------------------------------------------------------------------


def test_utkface_good_chip_and_malformed_names(tmp_path):
    good = {
        "26_0_1_20170116171048641.jpg": (26, 0),
        "26_0_1_20170116171048641.jpg.chip.jpg": (26, 0),
        "1_1_4_20161221193016140.jpg.chip.jpg": (1, 1),
        "116_1_0_20170120134921760.jpg": (116, 1),
    }
    malformed = ["39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
                 "61_3_20170109150557335.jpg.chip.jpg", "53__0_20170116184028385.jpg", "24_0_7_20170117.jpg"]
    for k, file in enumerate(list(good) + malformed):
        write_jpeg(tmp_path / "part1" / file, seed=k)
    records, skipped = by_path(formats.parse_utkface(tmp_path))
    assert {p.split("/")[-1]: (r.age, r.gender) for p, r in records.items()} == good
    assert sorted(p.split("/")[-1] for p in skipped) == sorted(malformed)
    # each photo its own identity; the aligned chip and the original share it
    ids = {p.split("/")[-1]: r.identity for p, r in records.items()}
    assert ids["26_0_1_20170116171048641.jpg"] == ids["26_0_1_20170116171048641.jpg.chip.jpg"]
    assert len(set(ids.values())) == 3


# --- MORPH ---------------------------------------------------------------------------------

MORPH_HEADER = ["id_num", "picture_num", "dob", "doa", "race", "gender", "facial_hair", "age", "age_diff", "glasses"]


def test_morph_photo_column_relative_to_csv(tmp_path):
    base = tmp_path / "MORPH"
    write_jpeg(base / "Album2" / "000001_00M21.JPG")
    write_jpeg(base / "Album2" / "000001_01M23.JPG", seed=1)
    write_jpeg(base / "Album2" / "000002_00F40.JPG", seed=2)
    lines = [
        [1, 0, "1/1/1980", "1/1/2001", "B", "M", 0, 21, 0, 0, "Album2/000001_00M21.JPG"],
        [1, 1, "1/1/1980", "1/1/2003", "B", "M", 0, 23, 2, 0, "Album2/000001_01M23.JPG"],
        [2, 0, "1/1/1960", "1/1/2000", "W", "F", 0, 40, 0, 1, "Album2/000002_00F40.JPG"],
        [3, 0, "1/1/1960", "1/1/2000", "W", "F", 0, 40, 0, 1, "Album2/000003_00F40.JPG"],  # no such file
        [4, 0, "1/1/1960", "1/1/2000", "W", "F", 0, "", 0, 1, "Album2/000004_00F.JPG"],  # no age
    ]
    write_csv(base / "morph_2008_nonCommercial.csv", MORPH_HEADER + ["photo"], lines)
    for root in (base, base / "morph_2008_nonCommercial.csv"):
        records, skipped = by_path(formats.parse_morph(root))
        got = {p: (r.age, r.gender, r.identity) for p, r in records.items()}
        assert got == {
            "Album2/000001_00M21.JPG": (21, 0, "1"),
            "Album2/000001_01M23.JPG": (23, 0, "1"),
            "Album2/000002_00F40.JPG": (40, 1, "2"),
        }
        assert {p: s.reason for p, s in skipped.items()} == {
            "Album2/000003_00F40.JPG": MISSING, "Album2/000004_00F.JPG": BAD_ANNOTATION,
        }


def test_morph_without_photo_column_finds_id_picture_names(tmp_path):
    write_jpeg(tmp_path / "images" / "000123_01M30.JPG")  # real naming, zero-padded
    write_jpeg(tmp_path / "images" / "77_2.JPG", seed=1)  # plain {id_num}_{picture_num}
    lines = [[123, 1, "", "", "H", "M", 1, 30, 0, 0], [77, 2, "", "", "A", "F", 0, 55, 0, 0],
             [78, 0, "", "", "A", "F", 0, 50, 0, 0]]
    write_csv(tmp_path / "morph.csv", MORPH_HEADER, lines)
    records, skipped = by_path(formats.parse_morph(tmp_path))
    assert {p: (r.age, r.gender, r.identity) for p, r in records.items()} == {
        "images/000123_01M30.JPG": (30, 0, "123"), "images/77_2.JPG": (55, 1, "77"),
    }
    assert [s.reason for s in skipped.values()] == [MISSING]


def test_morph_needs_exactly_one_csv(tmp_path):
    with pytest.raises(DatasetError, match="No MORPH annotation CSV"):
        formats.parse_morph(tmp_path)
    for name in ("a.csv", "b.csv"):
        write_csv(tmp_path / name, MORPH_HEADER, [])
    with pytest.raises(DatasetError, match="Several MORPH"):
        formats.parse_morph(tmp_path)


# --- MegaAge-Asian -------------------------------------------------------------------------


def make_megaage(root: Path, n_train: int = 20, n_test: int = 6) -> None:
    for part, n in (("train", n_train), ("test", n_test)):
        for k in range(1, n + 1):
            write_jpeg(root / part / f"{k}.jpg", seed=k + (100 if part == "test" else 0))
        (root / "list").mkdir(parents=True, exist_ok=True)
        (root / "list" / f"{part}_name.txt").write_text("".join(f"{k}.jpg\n" for k in range(1, n + 1)))
        (root / "list" / f"{part}_age.txt").write_text("".join(f"{k % 70}\n" for k in range(1, n + 1)) + "\n")


def test_megaage_line_aligned_lists(tmp_path):
    make_megaage(tmp_path, n_train=5, n_test=3)
    (tmp_path / "test" / "2.jpg").unlink()
    records, skipped = by_path(formats.parse_megaage_asian(tmp_path))
    assert {p: (r.age, r.gender, r.split) for p, r in records.items()} == {
        "train/1.jpg": (1, -1, 0), "train/2.jpg": (2, -1, 0), "train/3.jpg": (3, -1, 0), "train/4.jpg": (4, -1, 0),
        "train/5.jpg": (5, -1, 0), "test/1.jpg": (1, -1, 2), "test/3.jpg": (3, -1, 2),
    }
    assert len({r.identity for r in records.values()}) == 7
    assert {p: s.reason for p, s in skipped.items()} == {"test/2.jpg": MISSING}


def test_megaage_misaligned_lists_are_an_error(tmp_path):
    make_megaage(tmp_path, n_train=3, n_test=2)
    (tmp_path / "list" / "train_age.txt").write_text("1\n2\n")
    with pytest.raises(DatasetError, match="line-aligned"):
        formats.parse_megaage_asian(tmp_path)


# --- IMDB-Clean ----------------------------------------------------------------------------


def test_imdb_clean_csvs_boxes_identities_and_splits(tmp_path):
    rows = make_imdb(tmp_path)
    with open(tmp_path / "csvs" / "imdb_test_new.csv", "a", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["00/nm0000099_rm1_x.jpg", 30, "F", 10, 10, 5, 20, 0, 0, 0])  # box reversed
        writer.writerow(["00/nm0000098_rm1_x.jpg", 30, "F", 1, 1, 5, 5, 0, 0, 0])  # file missing
    records, skipped = by_path(formats.parse_imdb_clean(tmp_path))
    assert len(records) == len(rows) == 12
    for row in rows:
        record = records["data/imdb/" + row["file"]]
        assert (record.age, record.gender, record.identity) == (row["age"], row["gender"], row["person"])
        assert record.box == row["box"]
        assert record.split == {"train": 0, "valid": 1, "test": 2}[row["split"]]
    assert {p: s.reason for p, s in skipped.items()} == {
        "00/nm0000099_rm1_x.jpg": BAD_ANNOTATION, "00/nm0000098_rm1_x.jpg": MISSING,
    }


def test_imdb_clean_prefers_the_new_csvs(tmp_path):
    make_imdb(tmp_path)
    write_csv(tmp_path / "csvs" / "imdb_train_new_1024.csv", ["filename", "age"], [["x.jpg", 3]])
    records = formats.parse_imdb_clean(tmp_path).records
    assert len(records) == 12
    (tmp_path / "csvs" / "imdb_train_new.csv").unlink()
    write_csv(tmp_path / "csvs" / "imdb_train_other.csv", ["filename", "age"], [["x.jpg", 3]])
    with pytest.raises(DatasetError, match="Several CSVs for the train split"):
        formats.parse_imdb_clean(tmp_path)


# --- registry ------------------------------------------------------------------------------


def test_registry_lists_every_format_and_rejects_unknown_names():
    assert set(formats.FORMATS) == {"agedb", "afad", "cacd", "utkface", "morph", "megaage_asian", "imdb_clean"}
    assert formats.get_format("cacd").split_modes == ("identity", "rank")
    assert "predefined" in formats.get_format("imdb_clean").split_modes
    with pytest.raises(ValueError, match="format must be one of"):
        formats.get_format("fgnet")
