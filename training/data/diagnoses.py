"""Canonical diagnosis codes and the normalisation of every source's raw labels onto them.

All sources are mapped onto HAM10000-style codes: nv, mel, bkl, bcc, akiec, vasc, df, scc, unk.
Decisions for labels that have no exact HAM10000 counterpart:

- ISIC 2019 ``AK`` is ``akiec``; ISIC 2019 ``SCC`` stays ``scc`` (HAM10000's akiec includes
  Bowen's disease, which ISIC 2019 relabels as SCC: the class configurations decide whether the
  two codes share a class, the codes themselves stay faithful to the source).
- ISIC 2020 ``seborrheic keratosis``, ``lentigo NOS``, ``lichenoid keratosis`` and ``solar
  lentigo`` are ``bkl`` (HAM10000 groups exactly these as "benign keratosis-like lesions").
- ISIC 2020 ``cafe-au-lait macule`` (a benign pigmented macule, neither a nevus nor a
  keratosis) and ``atypical melanocytic proliferation`` (neither a confirmed nevus nor a
  confirmed melanoma) are ``unk``: forcing them into a class would teach it a wrong label.
- ISIC 2017 Part 3 has two flags; a row with neither is a benign nevus, ``nv``.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import DataError

CANONICAL_CODES = ("nv", "mel", "bkl", "bcc", "akiec", "vasc", "df", "scc", "unk")

# Long names and source spellings, lower case, single spaces; codes map onto themselves.
DIAGNOSIS_ALIASES = {
    **{code: code for code in CANONICAL_CODES},
    "nevus": "nv", "nevi": "nv", "naevus": "nv", "melanocytic nevus": "nv",
    "melanocytic nevi": "nv", "melanocytic naevus": "nv",
    "melanoma": "mel",
    "benign keratosis": "bkl", "benign keratosis-like lesion": "bkl",
    "benign keratosis-like lesions": "bkl", "seborrheic keratosis": "bkl",
    "seborrhoeic keratosis": "bkl", "solar lentigo": "bkl", "lentigo nos": "bkl",
    "lentigo": "bkl", "lichenoid keratosis": "bkl", "lichen planus-like keratosis": "bkl",
    "basal cell carcinoma": "bcc",
    "ak": "akiec", "actinic keratosis": "akiec", "actinic keratoses": "akiec",
    "intraepithelial carcinoma": "akiec", "bowen's disease": "akiec", "bowen disease": "akiec",
    "actinic keratoses and intraepithelial carcinoma": "akiec",
    "vascular lesion": "vasc", "vascular lesions": "vasc",
    "dermatofibroma": "df",
    "squamous cell carcinoma": "scc",
    "unknown": "unk", "other": "unk", "cafe-au-lait macule": "unk",
    "atypical melanocytic proliferation": "unk",
}

# ISIC 2019 one-hot ground-truth columns, in the file's order.
ISIC2019_COLUMNS = {
    "MEL": "mel", "NV": "nv", "BCC": "bcc", "AK": "akiec", "BKL": "bkl",
    "DF": "df", "VASC": "vasc", "SCC": "scc", "UNK": "unk",
}


def _key(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return " ".join(str(value).strip().lower().replace("_", " ").split())


def canonical_diagnosis(value: Any) -> str | None:
    """The canonical code of a raw diagnosis (a code or a long name, any case), or None."""
    return DIAGNOSIS_ALIASES.get(_key(value))


def canonical_diagnoses(values: list[Any], where: str) -> list[str]:
    """Map a column of raw diagnoses to canonical codes.

    Args:
        values: raw diagnosis cells.
        where: names the table in the error message, e.g. a file path.

    Raises:
        DataError: if any value is not a known diagnosis; lists each such value and its count.
    """
    codes: list[str] = []
    bad: dict[str, int] = {}
    for raw in values:
        code = canonical_diagnosis(raw)
        if code is None:
            shown = str(raw) if _key(raw) else "(empty)"
            bad[shown] = bad.get(shown, 0) + 1
        codes.append(code or "")
    if bad:
        listed = ", ".join(f"{raw!r} ({n} rows)" for raw, n in sorted(bad.items()))
        raise DataError(f"{where}: unknown diagnosis {listed}; use one of "
                        f"{', '.join(CANONICAL_CODES)} or their long names")
    return codes
