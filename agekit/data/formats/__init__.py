"""How each real face data set names its files and labels, one small parser per format.

Every parser takes the folder the user already has and returns a ``Parsed``:
the ``Record`` of each usable image (where it is, age, gender, identity, and the
data set's own split or rank when it ships one) and a ``Skip`` for each file or
annotation row it could not use, with the reason. Parsers only read names and
annotation files; decoding the pixels is the job of ``agekit.data.prepare``.

Conventions shared by all formats:

* ``gender``: 0 male, 1 female, -1 unknown (the order of the RAPL paper);
* ``identity``: a string that is the same for every photo of one person; data
  sets without identities use the photo itself (each image its own person);
* ``path``: the image's path relative to the root, with ``/`` separators.

Nothing outside the root is read. Every image path, whether found by walking
the folder or written in a data set's CSV or list file, goes through
``resolve_inside``: with every symbolic link followed it must name a regular
file inside the root, else it is skipped (``outside root``, ``not a regular
file``). Links to folders are not followed while walking. A file name that is
not valid UTF-8 is skipped (``name not UTF-8``) before anything is decoded.

The pieces live in three modules, and every name is importable from here:
``formats.common`` (records, skip reasons, the shared path and CSV functions),
``formats.names`` (formats whose labels are in the file names: AgeDB, AFAD,
CACD, UTKFace) and ``formats.annotations`` (formats with annotation files:
MORPH, MegaAge-Asian, IMDB-Clean). This module holds the registry.

Taught in ``notebooks/10_real_datasets.ipynb``.
"""

from agekit.data.formats.annotations import parse_imdb_clean, parse_megaage_asian, parse_morph
from agekit.data.formats.common import (  # noqa: F401  (re-exported: the names a parser's caller needs)
    AGE_RANGE,
    BAD_ANNOTATION,
    BAD_NAME,
    DUPLICATE,
    IMAGE_SUFFIXES,
    MISSING,
    NO_METADATA,
    NOT_REGULAR,
    OUTSIDE_ROOT,
    SPLIT_CODES,
    UNPARSEABLE,
    UNREADABLE,
    DatasetError,
    FormatSpec,
    Parsed,
    Record,
    Skip,
    find_inside,
    read_text,
    resolve_inside,
    shown_name,
)
from agekit.data.formats.names import CACD_META, parse_afad, parse_agedb, parse_cacd, parse_utkface  # noqa: F401

# --- the registry -----------------------------------------------------------------------

FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec("agedb", parse_agedb, ("identity",), True, "{image_id}_{Name}_{age}_{m|f}.jpg"),
        FormatSpec("afad", parse_afad, ("identity",), True, "<age>/<111|112>/<person_id>-<k>.jpg"),
        FormatSpec(
            "cacd", parse_cacd, ("identity", "rank"), False, "<age>_<Name>_<nnnn>.jpg [+ celebrity2000_meta.mat]"
        ),
        FormatSpec("utkface", parse_utkface, ("identity",), True, "[age]_[gender]_[race]_[datetime].jpg[.chip.jpg]"),
        FormatSpec(
            "morph", parse_morph, ("identity",), True, "CSV id_num,picture_num,...,gender,...,age[,photo] + images",
            file_root=True,
        ),
        FormatSpec(
            "megaage_asian", parse_megaage_asian, ("identity", "predefined"), False,
            "train/, test/, list/{train,test}_{name,age}.txt",
        ),
        FormatSpec(
            "imdb_clean", parse_imdb_clean, ("identity", "predefined"), True,
            "csvs/imdb_{train,valid,test}_new.csv + data/imdb/<filename>",
        ),
    )
}


def get_format(name: str) -> FormatSpec:
    """The FormatSpec called ``name``, or a ValueError listing the known formats."""
    if name not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {name!r}.")
    return FORMATS[name]
