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

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import InputError
from ..journal import JournalHeader
from ..journal_lines import Damage, damaged_lines_note, header_line, outcome_lines
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
    # Images of a journal read alone whose latest line is damaged: no usable score (their earlier
    # line, if any, is the result of a file since replaced).
    unusable: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # for the user: damaged journal lines


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


@dataclass
class _Journal:
    """A journal read for validation: each image's latest line, good or damaged."""

    header: JournalHeader
    outcomes: dict[str, Outcome]  # image -> its latest line, where that line is readable
    damaged: dict[str, tuple[int, Damage]]  # image -> its latest line (number, why), where that is damaged
    nameless: list[tuple[int, Damage]]  # damaged lines that no longer say which image they were for


def _read_journal(path: Path, classes: list[str]) -> _Journal:
    """The journal's header and each image's latest line (a later line wins, a damaged one too).

    Each line is checked as screening checks a line it reuses (``read_outcome``: as many
    probabilities as ``classes``, each a number in 0..1, and a checksum that still matches): a
    torn last line, or one damaged by hand or disk, is never read as NaN scores or crash on a ragged row. Nor does an image whose
    latest line is damaged fall back to its earlier line: a later line is written only when the
    image was screened again (its file or metadata changed, or it had failed), so the earlier
    one is the result of something that is no longer there.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read journal {path}: {exc}") from exc
    header = JournalHeader.from_json(header_line(data).decode("utf-8", errors="replace"))
    if header is None:
        raise InputError(f"{path} is not a screening journal")
    journal = _Journal(header, {}, {}, [])
    # The header's malignant indices number its own classes: checked only when they are these.
    malignant = header.malignant if tuple(classes) == tuple(header.classes) and header.malignant else None
    for number, item in outcome_lines(data, tuple(classes), malignant, checksummed=bool(header.line_checksum)):
        if isinstance(item, Outcome):
            journal.outcomes[item.image] = item
            journal.damaged.pop(item.image, None)
        elif item.image is not None:
            journal.damaged[item.image] = (number, item)
            journal.outcomes.pop(item.image, None)
        else:
            journal.nameless.append((number, item))
    return journal



def _damaged(journal: _Journal, images: Iterable[str]) -> list[tuple[int, str | None, Damage]]:
    """The damaged (or torn) latest lines of ``images``, in file order."""
    return sorted(((journal.damaged[i][0], i, journal.damaged[i][1]) for i in images if i in journal.damaged),
                  key=lambda line: line[0])


def _alone_warnings(path: Path, journal: _Journal) -> list[str]:
    """What the user must know of a journal read alone: images left out for a damaged latest
    line, and damaged lines that name no image (which may have hidden an image's newer result)."""
    warnings = []
    if journal.damaged:
        images = sorted(journal.damaged)
        who = f"{images[0]} is" if len(images) == 1 else "those images are"
        warnings.append(damaged_lines_note(path, _damaged(journal, images),
                                           f"{who} left out, not scored on an earlier line"))
    if journal.nameless:
        they = "it names" if len(journal.nameless) == 1 else "they name"
        warnings.append(damaged_lines_note(path, [(n, None, damage) for n, damage in journal.nameless],
                                           f"{they} no image: an image whose newer result was on "
                                           f"{'it' if len(journal.nameless) == 1 else 'one'} is scored on its older line"))
    return warnings


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
    unusable: list[str] = []
    warnings: list[str] = []
    if journal.is_file():
        read = _read_journal(journal, classes)
        header, outcomes = read.header, read.outcomes
        same_run = list(header.classes) == classes and (not bundle or header.bundle == bundle)
        if same_run:
            bundle = header.bundle
        if same_run and path == journal:
            probabilities = {i: o.probabilities for i, o in outcomes.items() if o.status == OK}
            errors = sorted(i for i, o in outcomes.items() if o.status != OK)
            unusable = sorted(read.damaged)
            precision = "journal (6 decimals)"
            warnings = _alone_warnings(journal, read)
        elif same_run:
            wanted = probabilities.keys()
            kept = {image: outcomes[image].probabilities for image in wanted
                    if image in outcomes and outcomes[image].status == OK}
            # The journal outlives its CSV: a later --resume that re-screened a replaced picture and
            # was killed before writing the CSV leaves a newer line (damaged or not). Only a journal
            # that says what the CSV says is this CSV's (both are rounded to 6 decimals: equal when
            # the same run).
            if len(kept) == len(wanted) and all(_same(kept[image], probabilities[image]) for image in kept):
                probabilities, precision = kept, "journal (6 decimals)"
            damaged = _damaged(read, wanted)
            if damaged:
                warnings.append(damaged_lines_note(journal, damaged, "scores read from the CSV, not the journal"))
        elif path == journal:
            raise InputError(f"journal {journal} holds classes {list(header.classes)}, not bundle "
                             f"{manifest.tag}'s {classes}")
    if not probabilities:
        raise InputError(f"{path} has no successfully screened image")
    images = sorted(probabilities)
    # One floor for both files: a probability stored as 0 is read as CSV_ZERO.
    floored = np.maximum(np.array([probabilities[i] for i in images], dtype=np.float64), CSV_ZERO)
    return Scores(images=images, probabilities=floored,
                  patient_ids=patient_ids, bundle=bundle, precision=precision, error_rows=sorted(errors),
                  source=path, unusable=unusable, warnings=warnings)
