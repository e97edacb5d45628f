"""Screening results: one outcome per image, ranked into the output CSV and its summary JSON."""

from __future__ import annotations

import codecs
import csv
import errno
import io
import itertools
import json
import os
import re
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .atomic import atomic_write, atomic_write_chunks
from .manifest import Manifest
from .operating_points import flag

OK = "ok"
ERROR = "error"
# Fixed precision makes a resumed run's CSV byte-identical to an uninterrupted one and keeps
# the file readable; 1e-6 is far below any clinically meaningful probability difference.
DECIMALS = 6
TOP_RISKS = 10
# Cells a spreadsheet would evaluate as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


# slots: one instance per image lives for the whole run, so its size is per-image memory.
@dataclass(frozen=True, slots=True)
class Outcome:
    """What screening one image gave; the unit the journal stores.

    Metadata-derived fields (patient id, metadata warnings, extra columns) are not here: they
    are re-read from the patients CSV at every run, so the output always reflects it.
    """

    image: str  # path relative to the images folder, POSIX separators
    fingerprint: str  # file size, mtime and metadata codes; a change means re-screen
    status: str  # OK or ERROR
    probabilities: tuple[float, ...] = ()  # per class, in manifest order
    risk: float | None = None  # summed probability of the malignant classes
    prediction: str = ""  # most probable class name
    confidence: float | None = None  # its probability
    lesion_area: float | None = None  # fraction of mask pixels above the threshold
    error: str = ""  # why an error row failed
    warnings: tuple[str, ...] = ()  # image-level warnings
    screened_at: str = ""  # when the image was screened (UTC, ISO 8601, seconds)
    # An error whose cause may pass (read error, time-out): --resume screens the image again.
    retry: bool = False

    def to_json(self) -> str:
        """The journal line as versions before line checksums wrote it; today's journal lines are
        written by ``journal_lines.outcome_line`` (this plus a checksum)."""
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> "Outcome":
        """Parse one journal line; raises ValueError (or a subclass) when it is not an outcome."""
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("journal line is not an object")
        try:
            data["probabilities"] = tuple(float(p) for p in data.get("probabilities", ()))
            data["warnings"] = tuple(str(w) for w in data.get("warnings", ()))
            return cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc


def error_outcome(image: str, fingerprint: str, reason: str, warnings: Iterable[str] = (), *,
                  retry: bool = False) -> Outcome:
    """An error row's outcome: the image is accounted for, with the reason it has no result;
    ``retry`` when the cause may pass, so that ``--resume`` tries the image again."""
    return Outcome(image=image, fingerprint=fingerprint, status=ERROR, error=reason,
                   warnings=tuple(warnings), retry=retry)


def display_name(name: str) -> str:
    """A path as a user should see it: bytes that are not UTF-8 shown as ``\\xe9`` escapes.

    Discovery keeps each name as the OS gave it (undecodable bytes as surrogates, so that the
    file can still be opened); this is its printable, encodable form for rows and messages.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# slots: one instance per image lives for the whole run, so its size is per-image memory.
@dataclass(frozen=True, slots=True)
class ResultRow:
    """One output row before ranking: an outcome joined with the image's metadata row."""

    outcome: Outcome
    patient_id: str = ""
    warnings: tuple[str, ...] = ()  # metadata warnings first, then the outcome's
    extra: dict[str, str] = field(default_factory=dict)  # extra patients.csv columns
    new: bool = False  # screened by this job (not reused from an earlier, finished run)


def rank_rows(rows: Iterable[ResultRow]) -> list[tuple[int | None, ResultRow]]:
    """Order rows for review: ok rows by risk (highest first), ties by image path; errors last.

    Risk is compared as printed (rounded), so rows that look tied are ordered by path, and the
    order does not depend on digits nobody sees.
    """
    rows = list(rows)
    ok = sorted((r for r in rows if r.outcome.status == OK),
                key=lambda r: (-round(r.outcome.risk or 0.0, DECIMALS), r.outcome.image))
    errors = sorted((r for r in rows if r.outcome.status != OK), key=lambda r: r.outcome.image)
    return [(i, r) for i, r in enumerate(ok, start=1)] + [(None, r) for r in errors]


def columns(manifest: Manifest, extra_columns: Iterable[str] = ()) -> list[str]:
    """Output column names; extra patients.csv columns come last, renamed ``csv_<name>`` on a clash
    (again while the name is taken, so that every column's name is its own)."""
    base = ["rank", "image", "patient_id", "risk", "flag", "prediction", "confidence",
            *(f"p_{name}" for name in manifest.class_names), "lesion_area", "status", "error",
            "warnings", "bundle", "screened_at", "new"]
    names = list(base)
    for extra in extra_columns:
        names.append(output_name(extra, names))
    return names


def output_name(extra_column: str, taken: list[str]) -> str:
    """A patients.csv column's name in the output: ``csv_<name>`` where ``name`` is taken, or is one
    of the results' ``p_<class>`` names (``p_id``, ``p_score``), which readers take for a class's
    probability."""
    name = extra_column
    while name in taken or name.startswith("p_"):
        name = f"csv_{name}"
    return name


def neutralise(text: str) -> str:
    """Make a text cell inert in a spreadsheet: formula-like text gets a leading apostrophe.

    Plain numbers such as ``-0.5`` are left alone: a spreadsheet reads them as numbers, not
    formulas.
    """
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_delimiter(header: str, required: Iterable[str]) -> str:
    """The delimiter of a results CSV whose first line is ``header``: the comma screen writes, or
    the semicolon where only that splits out the ``required`` columns, as a spreadsheet in a
    decimal-comma locale saves the file (with '0,93' for 0.93)."""
    def columns(delimiter: str) -> set[str]:
        return {original_text(c) for c in next(csv.reader([header], delimiter=delimiter), [])}
    needed = set(required)
    return ";" if not needed <= columns(",") and needed <= columns(";") else ","


def decode_problem(error: UnicodeDecodeError) -> str:
    """Why a results CSV did not read as UTF-8: in a reviewer's words where it was saved as a
    spreadsheet's "Unicode text" (UTF-16, whose byte order mark fails at the first byte), else the
    codec's own."""
    if error.start == 0 and bytes(error.object[:2]) in (b"\xff\xfe", b"\xfe\xff"):
        return ('it is UTF-16 text (a spreadsheet\'s "Unicode text"): save it as "CSV UTF-8", or use the CSV '
                'that screen folder wrote')
    return str(error)


def original_text(cell: str) -> str:
    """Undo :func:`neutralise`: ``'=cmd|`` was ``=cmd|`` before it was written.

    Only an apostrophe that neutralising would have added is removed: ``'-5`` is a patient id
    typed with its apostrophe (``neutralise`` leaves the number ``-5`` alone), and stays as typed.
    """
    if cell.startswith("'") and neutralise(cell[1:]) == cell:
        return cell[1:]
    return cell


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.{DECIMALS}f}"


def _flag(risk: float | None, threshold: float | None) -> str:
    """refer/routine at the operating point; empty without one (older bundles) or without a risk."""
    return "" if threshold is None or risk is None else flag(risk, threshold)


def _cells(rank: int | None, row: ResultRow, manifest: Manifest, extra_columns: list[str],
           threshold: float | None) -> list[str]:
    out = row.outcome
    probabilities = list(out.probabilities) or [None] * len(manifest.classes)
    text = [display_name(out.image), row.patient_id]
    numbers = [_number(out.risk)]
    cells = ["" if rank is None else str(rank), *map(neutralise, text), *numbers,
             _flag(out.risk, threshold), neutralise(out.prediction), _number(out.confidence), *map(_number, probabilities),
             _number(out.lesion_area), out.status, neutralise(out.error),
             neutralise("; ".join(row.warnings)), neutralise(manifest.identity),
             neutralise(out.screened_at), "yes" if row.new else "no"]
    return cells + [neutralise(row.extra.get(name, "")) for name in extra_columns]


def iter_csv(ranked: Iterable[tuple[int | None, ResultRow]], manifest: Manifest,
             extra_columns: Iterable[str] = (), threshold: float | None = None) -> Iterator[str]:
    """The results CSV text line by line: header, then one line per row in ``ranked`` order.

    Line by line so that a large run is written without the whole text in memory at once.
    ``threshold`` is the operating point's risk threshold for the flag column (None: empty flags).
    The flag compares the full-precision risk, not the printed one.
    """
    extra_columns = list(extra_columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def take() -> str:
        line = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return line

    writer.writerow([neutralise(c) for c in columns(manifest, extra_columns)])
    yield take()
    for rank, row in ranked:
        writer.writerow(_cells(rank, row, manifest, extra_columns, threshold))
        yield take()


def render_csv(ranked: list[tuple[int | None, ResultRow]], manifest: Manifest,
               extra_columns: Iterable[str] = (), threshold: float | None = None) -> str:
    """The results CSV text: header plus one line per row in ``ranked`` order."""
    return "".join(iter_csv(ranked, manifest, extra_columns, threshold))


def write_results_csv(path: Path, ranked: Iterable[tuple[int | None, ResultRow]], manifest: Manifest,
                      extra_columns: Iterable[str] = (), threshold: float | None = None) -> None:
    """Write the ranked CSV atomically, UTF-8 with a BOM so that Excel shows accents right."""
    lines = iter_csv(ranked, manifest, extra_columns, threshold)
    atomic_write_chunks(path, itertools.chain([codecs.BOM_UTF8], (line.encode("utf-8", "backslashreplace") for line in lines)))


def history_folder(csv_path: Path) -> Path:
    """``results.csv`` -> ``results.history/`` beside it: a dated copy of each run's summary."""
    csv_path = Path(csv_path)
    return csv_path.with_name(f"{csv_path.stem}.history")


def history_path(csv_path: Path, started_at: str) -> Path:
    """``results.csv`` started 2026-11-29T02:00:00+00:00 -> ``results.history/20261129T020000Z.summary.json``."""
    stamp = started_at.replace("-", "").replace(":", "").replace("+0000", "Z")
    return history_folder(csv_path) / f"{stamp}.summary.json"


def write_history(summary: "Summary", csv_path: Path, started_at: str,
                  warn: Callable[[str], None]) -> Path | None:
    """Add this run's summary to the run history (:func:`history_path`); the path, or None
    when it could not be written.

    Written after the results CSV and the summary JSON, which are the night's product: a
    history that cannot be written (a file or a symbolic link at its name, a full disk) is a
    warning that says so, not a failure that would also cost the night its report. The folder
    is never followed through a symbolic link (the summaries name patients): one there is
    refused, as the up-front checks refuse it (screening.output_paths).
    """
    folder = history_folder(csv_path)
    path = history_path(csv_path, started_at)
    try:
        _own_folder(folder)
        write_summary_json(summary, path)
    except OSError as error:
        warn(f"the run history was not written: {error.filename or path}: {error.strerror or error}; "
             f"the results {csv_path} and its summary {summary_path(csv_path)} are complete")
        return None
    return path


def _own_folder(folder: Path) -> None:
    """Create ``folder`` unless it exists; refuse a symbolic link or a file at its name (OSError)."""
    try:
        os.mkdir(folder)  # never follows a link at the name: an existing one is FileExistsError
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode):
        raise OSError(errno.ELOOP, "it is a symbolic link (refusing to follow it)", str(folder))
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(errno.ENOTDIR, "a file, not a folder, has its name", str(folder))


def summary_path(csv_path: Path) -> Path:
    """``results.csv`` -> ``results.summary.json`` beside it."""
    csv_path = Path(csv_path)
    return csv_path.with_name(f"{csv_path.stem}.summary.json")


@dataclass
class Summary:
    """The end-of-run report, printed and written as JSON beside the CSV."""

    output: str  # the results CSV
    bundle: str  # name@version
    backend: str  # what ran, e.g. "onnxruntime 1.20.0 (CPU, 2 threads)"
    backend_note: str  # why that backend was picked
    images: int  # rows in the CSV = image files found
    status: dict[str, int]  # rows per status
    screened: int  # images run through the models by this run
    reused: int  # results taken from the journal of an earlier run
    ignored_files: list[str]  # non-image files in the folder
    metadata_rows_without_image: list[str]  # patients.csv keys no image matched
    duplicate_keys: dict[str, int]  # key -> rows, for keys on more than one patients.csv row
    metadata_warnings: list[str]  # about the patients CSV as a whole (encoding, blank keys)
    images_without_metadata: int
    rows_with_warnings: int
    top_risks: list[dict[str, Any]]
    elapsed_s: float  # whole run, validation to CSV
    images_per_s: float  # screened / elapsed
    statement: str  # not for diagnosis
    # The operating point behind the flag column (name, threshold, where fitted) and how many ok
    # rows it refers; None for a bundle without operating points.
    operating_point: dict[str, Any] | None = None
    referrals: int | None = None
    # For the audit of a nightly job: when, where, with what, on what.
    started_at: str = ""  # UTC, ISO 8601
    finished_at: str = ""
    host: str = ""
    tool_version: str = ""  # lesion-screening version
    bundle_sha256: str = ""  # of the canonical manifest (``bundle`` shows its first 8 digits)
    inputs: dict[str, str] = field(default_factory=dict)  # absolute images_dir, meta_csv, bundle_dir, output
    new_rows: int = 0  # rows marked new: screened by this job

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def top_risks(ranked: list[tuple[int | None, ResultRow]], n: int = TOP_RISKS) -> list[dict[str, Any]]:
    """The first ``n`` ranked rows as small dicts for the summary."""
    top = []
    for rank, row in ranked[:n]:
        if rank is None:
            break
        top.append({"rank": rank, "image": display_name(row.outcome.image), "patient_id": row.patient_id,
                    "risk": round(row.outcome.risk or 0.0, DECIMALS), "prediction": row.outcome.prediction})
    return top


def write_summary_json(summary: Summary, path: Path) -> None:
    atomic_write(path, (json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace"))


def format_summary(summary: Summary, top: int = 5) -> str:
    """The summary as the few lines printed at the end of a run."""
    counts = ", ".join(f"{status} {n}" for status, n in summary.status.items())
    lines = [
        f"Screened {summary.images} image{'s' if summary.images != 1 else ''} ({counts}) "
        f"in {summary.elapsed_s:.1f} s, {summary.images_per_s:.1f} images/s",
        f"  backend: {summary.backend} ({summary.backend_note})",
        f"  bundle: {summary.bundle}; this run screened {summary.screened}, "
        f"reused {summary.reused} from the journal",
    ]
    notes = [(len(summary.ignored_files), "non-image files ignored"),
             (summary.images_without_metadata, "images without a metadata row"),
             (len(summary.metadata_rows_without_image), "metadata rows without an image"),
             (len(summary.duplicate_keys), "duplicate metadata keys"),
             (summary.rows_with_warnings, "rows with warnings")]
    if any(n for n, _ in notes):
        lines.append("  " + "; ".join(f"{n} {what}" for n, what in notes if n))
    if summary.operating_point is not None:
        point = summary.operating_point
        lines.append(f"Referred {summary.referrals} of {summary.status.get(OK, 0)} at operating point "
                     f"{point['name']} (risk >= {point['threshold']:.4f}; sensitivity "
                     f"{point['sensitivity']:.2f}, specificity {point['specificity']:.2f} where fitted)")
    if summary.top_risks:
        lines.append("Highest risk:")
        for item in summary.top_risks[:top]:
            patient = f" (patient {item['patient_id']})" if item["patient_id"] else ""
            lines.append(f"  {item['rank']:>3}  {item['risk']:.3f}  {item['prediction']:<8} "
                         f"{item['image']}{patient}")
    lines.append(f"Results: {summary.output} (summary: {summary_path(Path(summary.output)).name})")
    lines.append(summary.statement)
    return "\n".join(lines)
