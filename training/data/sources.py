"""Readers that turn each public dataset table into one common frame of lesion images.

Every reader returns the columns of ``SOURCE_COLUMNS``: image_id, image_path, mask_path,
diagnosis (canonical code, see ``diagnoses``), age, sex, site (raw strings, not encoded),
lesion_id, patient_id, source. Cells that only say "not recorded" ("unknown", "", "nan", ...)
become empty, so missing means missing in every source; all other values are kept verbatim.

Formats, detected from the header or named explicitly:

- ``ham10000``: HAM10000_metadata.csv.
- ``isic2017``: ISIC-2017 Part 3 ground truth; its ``*_Data_metadata.csv`` adds age and sex.
- ``isic2019``: ISIC_2019_Training_GroundTruth.csv; ISIC_2019_Training_Metadata.csv adds age,
  sex, site and lesion ids.
- ``isic2020``: ISIC_2020_Training_GroundTruth.csv (the challenge's train.csv); its companion
  ISIC_2020_Training_Duplicates.csv lists image pairs of which the second is dropped.
- ``labels``: a generic CSV with image_id, file, diagnosis and optional mask_file, age, sex,
  site, lesion_id, patient_id; file paths are relative to the CSV's folder.

A companion table (metadata or duplicates list) is found next to its ground truth by its
official file name, or given explicitly. The table-only formats take an images folder:
image_path = folder / "<name>.jpg", empty when no folder is given.

ISIC 2019 re-distributes the ISIC 2017 images partly as ``ISIC_xxxxxxx_downsampled``; the
image_id drops that suffix, so the same image has the same id in every source (de-duplication
relies on it), while image_path keeps the file's real name.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from screening.metadata import MISSING_STRINGS

from .diagnoses import ISIC2019_COLUMNS, canonical_diagnoses
from .errors import DataError

SOURCE_COLUMNS = ["image_id", "image_path", "mask_path", "diagnosis", "age", "sex", "site",
                  "lesion_id", "patient_id", "source"]
FORMATS = ("labels", "ham10000", "isic2019", "isic2020", "isic2017")
COMPANION_FORMATS = ("isic2017_metadata", "isic2019_metadata", "isic2020_duplicates")

# Columns that identify each table; the first match wins, so more specific tables come first.
_SIGNATURES = {
    "ham10000": {"lesion_id", "image_id", "dx", "localization"},
    "isic2017": {"image_id", "melanoma", "seborrheic_keratosis"},
    "isic2019": {"image", *ISIC2019_COLUMNS},
    "isic2020": {"image_name", "patient_id", "diagnosis", "anatom_site_general_challenge"},
    "labels": {"image_id", "file", "diagnosis"},
    "isic2017_metadata": {"image_id", "age_approximate", "sex"},
    "isic2019_metadata": {"image", "age_approx", "anatom_site_general"},
    "isic2020_duplicates": {"image_name_1", "image_name_2"},
}
_COMPANION_OF = {"isic2017": "isic2017_metadata", "isic2019": "isic2019_metadata",
                 "isic2020": "isic2020_duplicates"}
_DOWNSAMPLED = re.compile(r"_downsampled$")


@dataclass(frozen=True)
class Source:
    """One input table and how to read it."""

    path: Path  # ground-truth or labels CSV
    format: str | None = None  # one of FORMATS; detected from the header when None
    companion: Path | None = None  # 2017/2019 metadata or 2020 duplicates; found by name when None
    images_dir: Path | None = None  # folder of <image>.jpg for the table-only formats

    def resolved(self) -> "Source":
        """This source with its format detected and its companion table located."""
        fmt = self.format or detect_format(self.path)
        if fmt not in FORMATS:
            raise DataError(_companion_hint(self.path, fmt))
        companion = self.companion or official_companion(self.path, fmt)
        return replace(self, format=fmt, companion=companion)


def _header(path: Path) -> list[str]:
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as CSV: {exc}") from exc


def detect_format(path: Path) -> str:
    """The table format of a CSV from its columns: one of FORMATS or COMPANION_FORMATS.

    Raises:
        DataError: if the columns match no known format.
    """
    columns = set(_header(path))
    for fmt, needed in _SIGNATURES.items():
        if needed <= columns:
            return fmt
    raise DataError(f"{path}: cannot tell the format from its columns ({', '.join(sorted(columns))}); "
                    f"name it as PATH:FORMAT with FORMAT one of {', '.join(FORMATS)}")


def _companion_hint(path: Path, fmt: str) -> str:
    owner = next((k for k, v in _COMPANION_OF.items() if v == fmt), None)
    if owner is None:
        return f"{path}: format {fmt!r} is not one of {', '.join(FORMATS)}"
    return (f"{path} is the {fmt} table of {owner}: pass the ground-truth table as the source "
            f"and this one as its companion (GROUND_TRUTH.csv+{path.name})")


def official_companion(path: Path, fmt: str) -> Path | None:
    """The companion table next to a ground truth under its official name, if that file exists."""
    name = Path(path).name
    candidates = {
        "isic2017": [name.replace("Part3_GroundTruth", "Data_metadata")],
        "isic2019": [name.replace("GroundTruth", "Metadata")],
        "isic2020": [name.replace("GroundTruth", "Duplicates"), "ISIC_2020_Training_Duplicates.csv"],
    }.get(fmt, [])
    for candidate in candidates:
        sibling = Path(path).with_name(candidate)
        if candidate != name and sibling.is_file():
            return sibling
    return None


def sources_in_directory(directory: Path, images_dir: Path | None = None) -> list[Source]:
    """Every source table in a folder (companions attach to their ground truths by name).

    Raises:
        DataError: if the folder holds no table of a known source format.
    """
    found = []
    for path in sorted(Path(directory).glob("*.csv")):
        try:
            fmt = detect_format(path)
        except DataError:
            continue  # unrelated CSVs may share the folder
        if fmt in FORMATS:
            found.append(Source(path, fmt, images_dir=images_dir).resolved())
    if not found:
        raise DataError(f"{directory}: no source table found (looked for {', '.join(FORMATS)})")
    return found


def parse_source_spec(spec: str, images_dir: Path | None = None) -> list[Source]:
    """Sources from a command-line spec ``PATH[+COMPANION][:FORMAT]`` or a folder of tables."""
    fmt = None
    head, sep, tail = spec.rpartition(":")
    if sep and tail in FORMATS:
        spec, fmt = head, tail
    path_text, _, companion = spec.partition("+")
    path = Path(path_text)
    if path.is_dir():
        return sources_in_directory(path, images_dir)
    return [Source(path, fmt, Path(companion) if companion else None, images_dir).resolved()]


def is_missing(value: Any) -> bool:
    """True for an empty cell or a string that only says 'not recorded'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return " ".join(str(value).strip().lower().split()) in MISSING_STRINGS


def _blank(series: pd.Series) -> pd.Series:
    return series.map(lambda v: np.nan if is_missing(v) else str(v).strip())


def _read(path: Path, fmt: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as CSV: {exc}") from exc
    missing = _SIGNATURES[fmt] - set(frame.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))} for format {fmt}")
    return frame


def _image_paths(names: pd.Series, images_dir: Path | None) -> pd.Series:
    if images_dir is None:
        return pd.Series(np.nan, index=names.index, dtype=object)
    root = Path(images_dir).absolute()
    return names.map(lambda n: str(root / f"{n}.jpg"))


def _frame(source: str, **columns: Any) -> pd.DataFrame:
    ids = columns["image_id"]
    frame = pd.DataFrame({c: columns.get(c, np.nan) for c in SOURCE_COLUMNS}, index=ids.index)
    for col in ("age", "sex", "site", "lesion_id", "patient_id", "mask_path", "image_path"):
        frame[col] = _blank(frame[col])
    frame["source"] = source
    return frame.reset_index(drop=True)


def _join(frame: pd.DataFrame, key: str, companion: Path | None, fmt: str) -> pd.DataFrame:
    if companion is None:
        return frame
    meta = _read(companion, fmt).drop_duplicates(key)
    return frame.merge(meta, on=key, how="left", suffixes=("", "_meta")).fillna("")


def read_ham10000(path: Path, images_dir: Path | None = None) -> pd.DataFrame:
    """HAM10000_metadata.csv: dx, age, sex, localization, lesion_id."""
    t = _read(path, "ham10000")
    return _frame("ham10000", image_id=t["image_id"], image_path=_image_paths(t["image_id"], images_dir),
                  diagnosis=canonical_diagnoses(list(t["dx"]), str(path)), age=t["age"],
                  sex=t.get("sex"), site=t["localization"], lesion_id=t["lesion_id"])


def read_isic2017(path: Path, metadata: Path | None = None, images_dir: Path | None = None) -> pd.DataFrame:
    """ISIC 2017 Part 3: melanoma -> mel, seborrheic_keratosis -> bkl, neither -> nv."""
    t = _join(_read(path, "isic2017"), "image_id", metadata, "isic2017_metadata")
    mel = pd.to_numeric(t["melanoma"], errors="coerce") >= 0.5
    sk = pd.to_numeric(t["seborrheic_keratosis"], errors="coerce") >= 0.5
    diagnosis = np.where(mel, "mel", np.where(sk, "bkl", "nv"))
    return _frame("isic2017", image_id=t["image_id"], image_path=_image_paths(t["image_id"], images_dir),
                  diagnosis=diagnosis, age=t.get("age_approximate"), sex=t.get("sex"))


def read_isic2019(path: Path, metadata: Path | None = None, images_dir: Path | None = None) -> pd.DataFrame:
    """ISIC 2019: one-hot MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK; metadata adds site and lesion_id."""
    t = _join(_read(path, "isic2019"), "image", metadata, "isic2019_metadata")
    onehot = t[list(ISIC2019_COLUMNS)].apply(pd.to_numeric, errors="coerce").fillna(0.0)
    unlabelled = onehot.max(axis=1) < 0.5
    if unlabelled.any():
        raise DataError(f"{path}: {int(unlabelled.sum())} rows have no class set, "
                        f"e.g. {t['image'][unlabelled].iloc[0]}")
    diagnosis = onehot.idxmax(axis=1).map(ISIC2019_COLUMNS)
    return _frame("isic2019", image_id=t["image"].str.replace(_DOWNSAMPLED, "", regex=True),
                  image_path=_image_paths(t["image"], images_dir), diagnosis=diagnosis,
                  age=t.get("age_approx"), sex=t.get("sex"), site=t.get("anatom_site_general"),
                  lesion_id=t.get("lesion_id"))


def read_isic2020(path: Path, images_dir: Path | None = None) -> pd.DataFrame:
    """ISIC 2020 train.csv: diagnosis strings, patient ids, no lesion ids."""
    t = _read(path, "isic2020")
    return _frame("isic2020", image_id=t["image_name"], image_path=_image_paths(t["image_name"], images_dir),
                  diagnosis=canonical_diagnoses(list(t["diagnosis"]), str(path)), age=t.get("age_approx"),
                  sex=t.get("sex"), site=t["anatom_site_general_challenge"], patient_id=t["patient_id"])


def read_labels(path: Path) -> pd.DataFrame:
    """A generic labels CSV; file and mask_file are relative to the CSV's folder."""
    t = _read(path, "labels")
    root = Path(path).absolute().parent

    def under_root(column: str) -> pd.Series | None:
        if column not in t:
            return None
        return t[column].map(lambda f: str(root / f) if not is_missing(f) else np.nan)

    # A labels CSV names its source by its folder (ham10000_dev, isic2019_bcn_msk_84px, ...): the
    # unit a whole-source hold-out and the per-source figures work on. The CSV's own ``source``
    # column, where present, is a free-text provenance note, not a short name.
    return _frame(root.name or "labels", image_id=t["image_id"], image_path=under_root("file"),
                  mask_path=under_root("mask_file"),
                  diagnosis=canonical_diagnoses(list(t["diagnosis"]), str(path)), age=t.get("age"),
                  sex=t.get("sex"), site=t.get("site"), lesion_id=t.get("lesion_id"),
                  patient_id=t.get("patient_id"))


def read_source(source: Source) -> pd.DataFrame:
    """Read any source into the common frame (columns ``SOURCE_COLUMNS``)."""
    src = source.resolved()
    if src.format == "ham10000":
        return read_ham10000(src.path, src.images_dir)
    if src.format == "isic2017":
        return read_isic2017(src.path, src.companion, src.images_dir)
    if src.format == "isic2019":
        return read_isic2019(src.path, src.companion, src.images_dir)
    if src.format == "isic2020":
        return read_isic2020(src.path, src.images_dir)
    return read_labels(src.path)


def read_duplicate_pairs(source: Source) -> list[tuple[str, str]]:
    """The (kept, dropped) image pairs of an ISIC 2020 duplicates list; empty for other sources."""
    src = source.resolved()
    if src.format != "isic2020" or src.companion is None:
        return []
    table = _read(src.companion, "isic2020_duplicates")
    return list(zip(table["image_name_1"].str.strip(), table["image_name_2"].str.strip()))
