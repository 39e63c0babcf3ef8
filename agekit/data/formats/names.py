"""Face data sets whose labels are in the file names: AgeDB, AFAD, CACD and UTKFace.

Each parser walks the root (``_image_files``) and reads age, gender and
identity from each name; CACD's celebrity ranks come from its ``.mat`` file
when present. Registered in :data:`agekit.data.formats.FORMATS`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from agekit.data.formats.common import DatasetError, Parsed, _from_file_names, _person


_AGEDB = re.compile(r"^(?P<id>\d+)_(?P<name>.+)_(?P<age>\d+)_(?P<gender>[mfMF])$")


def parse_agedb(root: Path) -> Parsed:
    """AgeDB: ``{image_id}_{Name}_{age}_{m|f}.jpg``.

    The leading number counts images, not people; the identity is the name, read
    as everything between the image id (from the left) and age and gender (from
    the right), so names with spaces, underscores or accents parse.
    """

    def parse(rel: str) -> dict | None:
        match = _AGEDB.match(Path(rel).stem)
        if match is None or not _person(match["name"]):
            return None
        gender = 0 if match["gender"].lower() == "m" else 1
        return {"age": int(match["age"]), "gender": gender, "identity": _person(match["name"])}

    return _from_file_names(root, parse, "{image_id}_{Name}_{age}_{m|f}.jpg")


_AFAD_FILE = re.compile(r"^(?P<person>\d+)-(?P<k>\d+)$")


_AFAD_GENDER = {"111": 0, "112": 1}


def parse_afad(root: Path) -> Parsed:
    """AFAD-Full: ``<age>/<111 male | 112 female>/<person_id>-<k>.jpg``; identity = person id."""

    def parse(rel: str) -> dict | None:
        parts = rel.split("/")
        if len(parts) < 3 or not parts[-3].isdigit() or parts[-2] not in _AFAD_GENDER:
            return None
        match = _AFAD_FILE.match(Path(parts[-1]).stem)
        if match is None:
            return None
        return {"age": int(parts[-3]), "gender": _AFAD_GENDER[parts[-2]], "identity": match["person"]}

    return _from_file_names(root, parse, "<age>/<111|112>/<person_id>-<k>.jpg")


_CACD = re.compile(r"^(?P<age>\d+)_(?P<name>.+)_(?P<counter>\d+)$")


CACD_META = "celebrity2000_meta.mat"


def _cacd_ranks(root: Path) -> dict[str, int] | None:
    """{celebrity name: rank} from ``celebrity2000_meta.mat`` next to (or above) the images, if present."""
    candidates = [root / CACD_META, root.parent / CACD_META]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return None
    try:
        import scipy.io
    except ImportError:
        raise DatasetError(
            f"Reading {path.name} needs scipy (it comes with scikit-learn): pip install scipy."
        ) from None
    try:
        meta = scipy.io.loadmat(path, squeeze_me=True)
    except NotImplementedError:
        raise DatasetError(
            f"{path} is a MATLAB v7.3 (HDF5) file; use the small celebrity2000_meta.mat of the CACD release."
        ) from None
    except Exception as error:  # scipy raises several kinds for a damaged file
        raise DatasetError(f"Cannot read {path}: {error}") from None
    if "celebrityData" not in meta:
        found = sorted(k for k in meta if not k.startswith("__"))
        raise DatasetError(f"{path} has no 'celebrityData' struct (found {found}).")
    data = meta["celebrityData"]
    try:
        names = [str(n) for n in np.atleast_1d(data["name"].item())]
        ranks = [int(r) for r in np.atleast_1d(data["rank"].item())]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise DatasetError(f"{path}: celebrityData needs fields 'name' and 'rank' ({error}).") from None
    return {_cacd_key(name): rank for name, rank in zip(names, ranks)}


def _cacd_key(name: str) -> str:
    """Names match whether written with spaces or underscores."""
    return _person(name).replace(" ", "_").casefold()


def parse_cacd(root: Path) -> Parsed:
    """CACD: ``<age>_<Name_Parts>_<nnnn>.jpg``; age first, counter last, name between.

    Names may hold further ``_`` and ``.`` (``45_Harry_Connick_Jr._0002.jpg``).
    No gender. When ``celebrity2000_meta.mat`` is present, each record gets the
    celebrity's rank (used by the ``rank`` split); names not in it keep rank -1.
    """
    ranks = _cacd_ranks(root)

    def parse(rel: str) -> dict | None:
        match = _CACD.match(Path(rel).stem)
        if match is None or not _person(match["name"]):
            return None
        name = _person(match["name"])
        rank = -1 if ranks is None else ranks.get(_cacd_key(name), -1)
        return {"age": int(match["age"]), "identity": name, "rank": rank}

    return _from_file_names(root, parse, "<age>_<Name>_<nnnn>.jpg")


_UTK = re.compile(r"^(?P<age>\d+)_(?P<gender>[01])_(?P<race>[0-4])_(?P<time>\d+)$")


_UTK_CHIP = ".chip.jpg"


def parse_utkface(root: Path) -> Parsed:
    """UTKFace: ``[age]_[gender]_[race]_[datetime].jpg`` (or ``.jpg.chip.jpg``).

    Names with a missing race or an empty gender (a few exist in the release)
    are skipped. There are no identities: each photo is its own, and the aligned
    ``.chip.jpg`` and the original of one photo share it, so they never straddle
    splits.
    """

    def parse(rel: str) -> dict | None:
        name = rel.rsplit("/", 1)[-1]
        if name.lower().endswith(_UTK_CHIP):
            name = name[: -len(_UTK_CHIP)]
        stem = Path(name).stem
        match = _UTK.match(stem)
        if match is None:
            return None
        return {"age": int(match["age"]), "gender": int(match["gender"]), "identity": stem}

    return _from_file_names(root, parse, "[age]_[gender 0|1]_[race 0-4]_[datetime].jpg")
