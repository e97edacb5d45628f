"""The bundle's model card and the release facts it rests on: data hash, git state, package versions.

The card is for the people deciding whether to use a bundle: what it is for, what data (and
licences) it was trained on, which population that data describes, what each class means, what
it cannot do (with measured domain-shift figures when the config gives them), and what changed.
Texts a person must write (limitations, changelog, data licences) come from the config's
``export.card``; everything measurable is computed here from the index and the environment.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import platform
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

INTENDED_USE = ("Ranking dermoscopy images of skin lesions by malignancy risk for review by a qualified "
                "clinician (triage support, research). Not a medical device and not for diagnosis.")
DEFAULT_LIMITATIONS = [
    "Trained and validated on the data sources listed here only; other cameras, clinics and populations "
    "rank worse. Measure on local cases with `screen evaluate` before relying on it, and recalibrate with "
    "`screen calibrate`.",
    "Figures come from the validation split, which also chose the best epoch and the temperature, so they "
    "are somewhat optimistic.",
]
PACKAGES = ("torch", "timm", "segmentation-models-pytorch", "onnx", "onnxruntime", "numpy", "opencv-python-headless")
# Columns of the training index naming files: their folders differ between machines.
PATH_COLUMNS = ("image_path", "mask_path", "file", "mask_file")
DIRT_LISTED = 30  # modified files named in the manifest; the rest are counted


def data_sha256(index: Path) -> str | None:
    """sha256 of the training index with every path reduced to its file name.

    The same data indexed on another machine (or from another working directory) gets the
    same hash; a different image, label or split does not.
    """
    index = Path(index)
    if not index.is_file():
        return None
    digest = hashlib.sha256()
    with open(index, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        paths = [i for i, name in enumerate(header) if name in PATH_COLUMNS]
        digest.update(("\x1f".join(header) + "\n").encode("utf-8"))
        for row in reader:
            cells = [Path(cell.replace("\\", "/")).name if i in paths and cell else cell for i, cell in enumerate(row)]
            digest.update(("\x1f".join(cells) + "\n").encode("utf-8"))
    return digest.hexdigest()


# The repository this code runs from: what provenance and release checks ask git about.
REPO_ROOT = Path(__file__).resolve().parents[1]


def git_state(root: Path, exclude: Path | None = None) -> dict[str, Any]:
    """The commit and, if the working tree or the index differs from it, which tracked files do.

    Files under ``exclude`` do not count: an export's own destination (engines/starter) differs
    from the commit after every rebuild, and it is an output, not an input of the bundle. git
    itself leaves them out (a pathspec), so a file renamed out of that folder still counts.
    """
    command = ["git", "status", "--porcelain", "-z", "--no-renames", "--untracked-files=no"]
    if exclude is not None:
        try:
            skipped = Path(exclude).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:  # outside the repository: nothing of it is tracked
            skipped = "."
        if skipped != ".":
            command += ["--", ".", f":(exclude,literal){skipped}"]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        status = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "clean": False, "modified": [], "modified_count": 0}
    # -z: "XY path" entries ended by NUL, paths neither quoted nor escaped
    modified = sorted(entry[3:] for entry in status.split("\0") if entry.strip())
    return {"commit": sha, "clean": not modified, "modified": modified[:DIRT_LISTED],
            "modified_count": len(modified)}


def commit_label(git: dict[str, Any]) -> str:
    """'<sha>', '<sha>+dirty' (tracked files differ from it) or 'unknown', from ``git_state``."""
    if git["commit"] == "unknown":
        return "unknown"
    return git["commit"] + ("" if git["clean"] else "+dirty")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def population(index: Path, split: str = "train") -> dict[str, Any]:
    """Who the training data describes: images per class, sex, age range, sites and sources."""
    rows = []
    with open(index, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("split", split) == split]
    ages = sorted(float(r["age"]) for r in rows if (r.get("age") or "").replace(".", "", 1).isdigit())
    return {
        "split": split, "images": len(rows),
        "per_class": dict(Counter(r.get("label") or r.get("diagnosis", "") for r in rows).most_common()),
        "sex": dict(Counter((r.get("sex") or "unknown") for r in rows).most_common()),
        "age_range": [ages[0], ages[-1]] if ages else None,
        "age_median": ages[len(ages) // 2] if ages else None,
        "sites": dict(Counter((r.get("site") or "unknown") for r in rows).most_common(12)),
        "sources": dict(Counter((r.get("source") or "unknown") for r in rows).most_common()),
    }


def model_card(card_config: dict[str, Any], index: Path, classes: list[dict[str, Any]]) -> dict[str, Any]:
    """The card written into the manifest.

    Args:
        card_config: the config's ``export.card``: ``data_sources`` (list of {name, licence,
            url}), ``limitations`` (texts, e.g. measured domain-shift figures), ``changelog``
            (texts), optionally ``intended_use``.
        index: the training index CSV (population).
        classes: the class configuration's classes (name, label, malignant, diagnoses).
    """
    card = {
        "intended_use": card_config.get("intended_use", INTENDED_USE),
        "data_sources": list(card_config.get("data_sources", [])),
        "population": population(index) if Path(index).is_file() else None,
        "class_definitions": {c["name"]: {"label": c["label"], "malignant": c["malignant"],
                                          "diagnoses": list(c.get("diagnoses", []))} for c in classes},
        "limitations": [*DEFAULT_LIMITATIONS, *card_config.get("limitations", [])],
        "changelog": list(card_config.get("changelog", [])),
        "package_versions": package_versions(),
    }
    return card
