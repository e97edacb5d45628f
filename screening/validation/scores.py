"""The model's scores for local validation, read back from a screening run.

The results CSV and its journal (``results.csv.journal``) both hold probabilities rounded to 6
decimals (screening rounds them before summing the risk, so that the CSV's risk is exactly the
sum of its malignant columns). That is plenty for ranking and AUCs; for refitting a temperature
a probability of 0.000000 has lost its logarithm, so it is read as the middle of what rounds to
0 (``CSV_ZERO``), from either file. The journal is preferred whenever it belongs to the same run
(same bundle, same classes, the CSV's very numbers): it is there even when a killed run never
wrote the CSV, and it holds the numbers themselves rather than spreadsheet-safe text. The CSV
is read by ``results_csv``, which refuses what a spreadsheet or a cut-off copy has spoilt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..journal_lines import BadLine, read_outcome
from ..manifest import Manifest
from ..results import OK, Outcome
from ..tta import TTA_MODES
from .results_csv import read_results_csv

JOURNAL_SUFFIX = ".journal"
# Probabilities are rounded to 6 decimals (CSV and journal): one stored as 0 lies in [0, 5e-7), read
# as its middle so that its logarithm (temperature fitting) is finite and of the right size.
CSV_ZERO = 2.5e-7


@dataclass
class Scores:
    """Per screened image (status ok): class probabilities and the patient id the run gave it."""

    images: list[str]
    probabilities: np.ndarray  # (N, C) in the bundle's class order
    patient_ids: dict[str, str]  # image -> patient id, where the run had one
    bundle: str  # name@version that produced them
    precision: str  # "journal (6 decimals)" or "CSV (6 decimals)"
    error_rows: list[str]  # images whose screening failed (no scores)
    source: Path


def names_of(manifest: Manifest) -> set[str]:
    """What results rows of this bundle may name it: ``name@version``, or that plus the digest
    of its manifest (``Manifest.identity``, written by newer runs; ``legacy_identity``, by runs
    of screen before the digest was taken from the file's content)."""
    return {manifest.tag, getattr(manifest, "identity", manifest.tag),
            getattr(manifest, "legacy_identity", manifest.tag)}


def tta_of(scores: "Scores", manifest: Manifest) -> str | None:
    """The test-time augmentation the scores were screened with, if this bundle made them (its own,
    or another through ``screen folder --tta``: that run's identity is the bundle's with that TTA);
    None when another bundle made them. Scores that do not name a bundle are taken as its own."""
    if not scores.bundle or scores.bundle in names_of(manifest):
        return manifest.tta
    for mode in TTA_MODES:
        if mode != manifest.tta and scores.bundle == replace(manifest, tta=mode).identity:
            return mode
    return None


def made_by(scores: "Scores", manifest: Manifest) -> bool:
    """Whether the scores came from this very bundle, with any TTA (or do not say where they came from)."""
    return tta_of(scores, manifest) is not None


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-9 for x, y in zip(a, b))


def _read_journal(path: Path, classes: list[str]) -> tuple[dict, dict[str, Outcome]]:
    """The journal's header and its outcomes by image (a later line wins).

    Each line is checked as screening checks a line it reuses (``read_outcome``: as many
    probabilities as ``classes``, each a number in 0..1): a torn last line, or one damaged by
    hand or disk, is left out, never read as NaN scores or crash on a ragged row.
    """
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read journal {path}: {exc}") from exc
    try:
        header = json.loads(lines[0]) if lines else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != "screening-journal":
        raise InputError(f"{path} is not a screening journal")
    outcomes = {}
    for line in lines[1:]:
        try:
            outcome = read_outcome(line, tuple(classes))
        except BadLine:
            continue
        outcomes[outcome.image] = outcome
    return header, outcomes


def read_scores(path: Path, manifest: Manifest) -> Scores:
    """Scores of a results CSV (using its journal when it has one) or of a journal alone.

    Raises:
        InputError: unreadable, not results of this bundle's classes, or no ok row.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"results {path} not found")
    classes = manifest.class_names
    probabilities: dict[str, tuple[float, ...]] = {}
    patient_ids: dict[str, str] = {}
    errors: list[str] = []
    journal = path if path.name.endswith(JOURNAL_SUFFIX) else path.with_name(path.name + JOURNAL_SUFFIX)
    bundle = ""
    if path != journal:
        rows = read_results_csv(path, classes, manifest.tag)
        named = sorted({row.bundle for row in rows if row.ok})
        if len(named) > 1:  # rows of two bundles joined by hand: no one temperature or threshold fits them
            raise InputError(f"{path} holds rows of {len(named)} bundles ({', '.join(n or '(none)' for n in named[:3])}"
                             f"{', ...' if len(named) > 3 else ''}): evaluate or calibrate one bundle's results")
        bundle = named[0] if named else ""
        for row in rows:
            if not row.ok:
                errors.append(row.image)
                continue
            probabilities[row.image] = row.probabilities
            if row.patient_id:
                patient_ids[row.image] = row.patient_id
    precision = "CSV (6 decimals)"
    if journal.is_file():
        header, outcomes = _read_journal(journal, classes)
        same_run = list(header.get("classes", [])) == classes and (not bundle or header.get("bundle") == bundle)
        if same_run:
            bundle = str(header.get("bundle", bundle))
            wanted = probabilities.keys() if path != journal else [i for i, o in outcomes.items() if o.status == OK]
            kept = {image: outcomes[image].probabilities for image in wanted
                    if image in outcomes and outcomes[image].status == OK}
            if path == journal:
                errors = sorted(i for i, o in outcomes.items() if o.status != OK)
            # The journal outlives its CSV: a later --resume that re-screened a replaced picture and
            # was killed before writing the CSV leaves a newer line. Only a journal that says what
            # the CSV says is this CSV's (both are rounded to 6 decimals: equal when the same run).
            if len(kept) == len(wanted) and (path == journal or all(
                    _same(kept[image], probabilities[image]) for image in kept)):
                probabilities, precision = kept, "journal (6 decimals)"
        elif path == journal:
            raise InputError(f"journal {journal} holds classes {header.get('classes')}, not bundle "
                             f"{manifest.tag}'s {classes}")
    if not probabilities:
        raise InputError(f"{path} has no successfully screened image")
    images = sorted(probabilities)
    # One floor for both files: a probability stored as 0 is read as CSV_ZERO.
    floored = np.maximum(np.array([probabilities[i] for i in images], dtype=np.float64), CSV_ZERO)
    return Scores(images=images, probabilities=floored,
                  patient_ids=patient_ids, bundle=bundle, precision=precision, error_rows=sorted(errors),
                  source=path)
