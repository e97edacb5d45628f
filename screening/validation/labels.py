"""Ground-truth labels for local validation: the labels CSV and the diagnosis synonym table.

A clinic's labels come in its own words: HAM10000 codes (``mel``), ISIC names ("melanoma",
"seborrheic keratosis"), or the bundle's own class labels. Each is mapped onto the bundle's
classes through an explicit table; anything the table does not know is reported as unmapped and
left out, never guessed (a label such as "benign" or "other" names no class).

The labels CSV is read with the same reader as the patients CSV (delimiter, encoding, key
column and image matching are the same), so it may be the patients CSV itself with a diagnosis
column added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import InputError, MetadataError
from ..manifest import Manifest
from ..manifest_schema import normal_diagnosis
from ..patients import PatientTable, read_patients

# Accepted names of the diagnosis column, in priority order.
DIAGNOSIS_COLUMNS = ("diagnosis", "dx", "label", "class", "diagnosis_1")
# Accepted names of the optional data-source column (breakdowns by source).
SOURCE_COLUMNS = ("source", "dataset", "data_source", "clinic")

# Diagnosis text (normalised: lower case, single spaces) -> HAM10000 class code. Squamous cell
# carcinoma goes to akiec, HAM10000's class for actinic keratosis and intraepithelial carcinoma
# (Bowen's disease), the nearest class in that scheme; both are malignant in it.
SYNONYMS = {
    "nv": "nv", "nevus": "nv", "naevus": "nv", "melanocytic nevus": "nv", "melanocytic naevus": "nv",
    "melanocytic nevi": "nv", "nevi": "nv", "naevi": "nv", "blue nevus": "nv", "dysplastic nevus": "nv",
    "mel": "mel", "melanoma": "mel", "malignant melanoma": "mel", "melanoma in situ": "mel",
    "melanoma invasive": "mel", "melanoma metastasis": "mel",
    "bkl": "bkl", "benign keratosis": "bkl", "benign keratosis-like lesion": "bkl",
    "benign keratosis-like lesions": "bkl", "seborrheic keratosis": "bkl", "seborrhoeic keratosis": "bkl",
    "solar lentigo": "bkl", "lentigo": "bkl", "lentigo nos": "bkl", "lichenoid keratosis": "bkl",
    "lichen planus-like keratosis": "bkl", "pigmented benign keratosis": "bkl",
    "bcc": "bcc", "basal cell carcinoma": "bcc",
    "akiec": "akiec", "ak": "akiec", "actinic keratosis": "akiec", "actinic keratoses": "akiec",
    "intraepithelial carcinoma": "akiec", "bowen's disease": "akiec", "bowen disease": "akiec",
    "squamous cell carcinoma": "akiec", "scc": "akiec", "squamous cell carcinoma in situ": "akiec",
    "vasc": "vasc", "vascular lesion": "vasc", "vascular lesions": "vasc", "angioma": "vasc",
    "hemangioma": "vasc", "haemangioma": "vasc", "angiokeratoma": "vasc", "pyogenic granuloma": "vasc",
    "df": "df", "dermatofibroma": "df",
}


def class_lookup(manifest: Manifest) -> dict[str, int]:
    """Normalised diagnosis text -> index of the bundle class it means.

    The bundle's own class codes and labels always map; the synonym table maps onto a code only
    when the bundle has a class with that code.
    """
    index = {c.name: i for i, c in enumerate(manifest.classes)}
    lookup = {synonym: index[code] for synonym, code in SYNONYMS.items() if code in index}
    for i, spec in enumerate(manifest.classes):
        lookup[normal_diagnosis(spec.name)] = i
        lookup[normal_diagnosis(spec.label)] = i
    return lookup


@dataclass
class Labels:
    """Each image's true class (bundle class index) and the descriptors breakdowns use."""

    truth: dict[str, int]  # image path -> class index
    unmapped: dict[str, int]  # diagnosis text -> images with it, left out
    no_label: list[str]  # images whose labels row has no (or an empty) diagnosis
    no_row: list[str]  # images with no labels row at all
    descriptors: dict[str, dict[str, str]] = field(default_factory=dict)  # image -> patient_id/age/sex/site/source
    rows_without_image: list[str] = field(default_factory=list)  # label keys no image matched
    warnings: list[str] = field(default_factory=list)  # the reader's, about the file (an encoding fallback)


def _column(table: PatientTable, names: Iterable[str]) -> str | None:
    """The first extra column of the table whose normalised header is one of ``names``."""
    columns = {re.sub(r"[\s\-]+", "_", c.strip()).lower(): c for c in table.extra_columns}
    return next((columns[n] for n in names if n in columns), None)


def read_labels(path: Path, images: list[str], manifest: Manifest) -> Labels:
    """Read the labels CSV and map each image's diagnosis onto the bundle's classes.

    Args:
        path: the labels CSV (key column image/image_id/image_name/isic_id and a diagnosis column).
        images: the screened images, as relative paths.
        manifest: the bundle whose classes the diagnoses map onto.

    Raises:
        MetadataError: the CSV cannot be read or has no key column.
        InputError: it has no diagnosis column.
    """
    try:
        table = read_patients(path, images=images)
    except MetadataError as error:  # the reader's words are the patients CSV's: say which file it is
        raise MetadataError(f"--labels: {error}") from None
    diagnosis_column = _column(table, DIAGNOSIS_COLUMNS)
    if diagnosis_column is None:
        raise InputError(f"{path} has no diagnosis column (one of {', '.join(DIAGNOSIS_COLUMNS)}); "
                         f"its columns: {', '.join(table.extra_columns) or 'none besides the key'}")
    source_column = _column(table, SOURCE_COLUMNS)
    lookup = class_lookup(manifest)
    # The reader's words are the patients CSV's ("metadata CSV ..."): say which file it is, as errors do.
    labels = Labels(truth={}, unmapped={}, no_label=[], no_row=[],
                    warnings=[f"--labels: {warning}" for warning in table.warnings])
    matched_keys = []
    conflicts = []
    for image in images:
        match = table.match(image)
        row = match.row
        if row is None:
            labels.no_row.append(image)
            continue
        # Every row that fits this image: its key's repeats, and other keys that fit it less
        # specifically ('ISIC_1.jpg' and 'ISIC_1'), which screening would pass over.
        rows = []
        for fitting in (row, *match.others):
            rows += [(fitting.line, fitting.extra), *table.later_rows(fitting)]
        said = {normal_diagnosis(cells.get(diagnosis_column, "")) for _, cells in rows}
        if len({lookup.get(text, text) for text in said}) > 1:
            lines = sorted(line for line, _ in rows)
            texts = sorted(text or "(empty)" for text in said)  # an empty cell must still read as one
            conflicts.append(f"{row.key} (lines {', '.join(map(str, lines))}: {' / '.join(texts)})")
        matched_keys.append(row.key)
        labels.descriptors[image] = {
            "patient_id": row.patient_id or "", "age": row.age or "", "sex": row.sex or "",
            "site": row.site or "", "source": row.extra.get(source_column, "") if source_column else ""}
        text = normal_diagnosis(row.extra.get(diagnosis_column, ""))
        if not text:
            labels.no_label.append(image)
        elif text in lookup:
            labels.truth[image] = lookup[text]
        else:
            labels.unmapped[text] = labels.unmapped.get(text, 0) + 1
    if conflicts:
        # Screening uses a repeated key's first row; here that could make a melanoma (a later
        # histology row, say) a benign case of the validation and of the fitted thresholds.
        shown = "; ".join(conflicts[:5]) + (f"; and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
        raise InputError(f"{path} gives one image more than one diagnosis: {shown}. Keep one row per "
                         f"image with its final diagnosis")
    labels.rows_without_image = table.unmatched_keys(matched_keys)
    return labels
