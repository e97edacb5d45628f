"""The rows of a report, read back from a run's results CSV (or, for a killed run, its journal).

Reading the written CSV rather than the run's objects means a report shows exactly what the CSV
says, and picks up columns other features add (``flag``, ``screened_at``, ``new``) when present.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..journal import JournalHeader, journal_path
from ..journal_lines import Damage, damaged_lines_note, header_line, outcome_lines
from ..operating_points import flag
from ..stalled_reads import DEFAULT_STALL_S, read_pieces, stalled_line, while_progressing
from ..results import DECIMALS, ERROR, OK, Outcome, ResultRow, csv_delimiter, decode_problem, display_name, original_text, rank_rows

TOP_CLASSES = 3  # classes listed per row, most probable first
# Rows the CSV reader accepts at most: a cap far above any folder, so a hostile file cannot
# make the report builder take unbounded memory.
MAX_ROWS = 2_000_000
CSV_SOURCE = "results CSV"  # Results.source of rows read from a results CSV
# The columns without which a file is no results CSV, and the ones that hold numbers.
_REQUIRED = frozenset({"rank", "image", "risk", "status"})
_NUMBER_COLUMNS = ("risk", "confidence", "lesion_area")
# The header line is read at most this long to tell its delimiter (a line without an end is no header).
_HEADER_CHARS = 1 << 20


@dataclass
class ReportRow:
    """One image's line of the worklist."""

    rank: int | None
    image: str
    patient_id: str
    status: str  # OK or ERROR
    risk: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)  # class code -> probability
    lesion_area: float | None = None
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    flag: str = ""  # "refer" / "routine" where the run had an operating point
    new: bool | None = None  # screened by the last run (None: the CSV does not say)
    screened_at: str = ""
    bundle: str = ""
    # What the journal says this row screened (content and metadata codes); None when no journal
    # line is this row's screening. The row's pictures must be of this screening.
    fingerprint: str | None = None

    def top_classes(self, n: int = TOP_CLASSES) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:n]


@dataclass
class Results:
    """Rows in rank order and what the source said about itself."""

    rows: list[ReportRow]
    source: str  # "results CSV" or "journal (run not finished)"
    has_flag: bool = False
    has_new: bool = False
    bundle: str = ""  # the bundle tag the rows name
    # Whether a journal could say which screening each row is: without one, pictures cannot be
    # checked against the rows (an old run, or a CSV copied elsewhere).
    has_journal: bool = False
    notes: list[str] = field(default_factory=list)  # for the header: the CSV and its journal disagree


def _number(cell: str) -> float | None:
    """The cell's number (``nan``/``inf`` included: _finite turns those rows into errors)."""
    try:
        return float(cell) if cell.strip() else None
    except ValueError:
        return None


def _rank(cell: str) -> int | None:
    """A rank as the CSV writes it (ASCII digits); anything else (``²``, ``٣``, ``1.5``) is no rank."""
    cell = cell.strip()
    return int(cell) if cell.isascii() and cell.isdecimal() else None


def _finite(row: ReportRow, source: str) -> ReportRow:
    """An ok row with a nan/inf number becomes an error row saying which column.

    Such a number cannot be ranked, compared with a threshold or written into the page's JSON
    (a bare NaN there makes the browser's JSON.parse fail and blanks the whole worklist).
    """
    numbers = {"risk": row.risk, "lesion_area": row.lesion_area,
               **{f"p_{code}": p for code, p in row.probabilities.items()}}
    bad = [name for name, value in numbers.items() if value is not None and not math.isfinite(value)]
    if not bad or row.status != OK:  # an error row keeps its own reason (its numbers are not shown)
        return row
    return ReportRow(rank=None, image=row.image, patient_id=row.patient_id, status=ERROR,
                     error=f"non-finite {', '.join(bad)} in the {source}", warnings=row.warnings,
                     new=row.new, screened_at=row.screened_at, bundle=row.bundle, fingerprint=row.fingerprint)


def _usable(row: ReportRow, cells: dict[str | None, str | None], probabilities: frozenset[str]) -> ReportRow:
    """A row cut short (a copy taken while the CSV was written), a status that is neither ok nor
    error (retyped), or an ok row whose risk or a
    probability is no number in 0..1 (a spreadsheet's ``0,93`` or ``93%``, a retyped cell), becomes
    an error row saying so: shown as an error without a reason, or as a result without its risk,
    it would mislead the reviewer. Non-finite numbers are left to :func:`_finite`."""
    problem = ""
    status = cells.get("status")
    if any(value is None for key, value in cells.items() if key is not None):
        problem = "its row in the results CSV is cut short (copied while it was written?)"
        problem += f"; {row.error}" if row.error else ""
    elif status not in (OK, ERROR):  # a retyped 'OK': an error row without a reason says nothing
        problem = f"status {status!r} in the results CSV is neither {OK} nor {ERROR}"
    elif row.status == OK:
        text = {key: (value or "").strip() for key, value in cells.items() if key is not None}
        for name in ("risk", *(key for key in text if key in probabilities)):
            value = _number(text[name]) if name in text else None
            if value is None:
                problem = f"{name} {text.get(name, '')!r} in the results CSV is not a number"
            elif math.isfinite(value) and not 0.0 <= value <= 1.0:
                problem = f"{name} {text[name]!r} in the results CSV is not a probability"
            if problem:
                break
    if not problem:
        return row
    return ReportRow(rank=None, image=row.image, patient_id=row.patient_id, status=ERROR, error=problem,
                     warnings=row.warnings, new=row.new, screened_at=row.screened_at, bundle=row.bundle)


def read_results_csv(path: Path, beat: Callable[[], None] = lambda: None,
                     classes: list[str] | None = None) -> Results:
    """Rows of a results CSV in rank order (its ``rank`` column); ``beat()`` as each row is read (the
    progress that :func:`read_results` is watched by). Comma-separated as written, or semicolons
    and decimal commas as a spreadsheet in many locales saves it. ``classes``: the bundle's class
    codes, whose ``p_`` columns are the probabilities (None: every ``p_`` column).

    Raises:
        InputError: the file is missing, unreadable or not a results CSV.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            semicolons = csv_delimiter(fh.readline(_HEADER_CHARS), _REQUIRED) == ";"
            fh.seek(0)
            reader = csv.DictReader(fh, delimiter=";" if semicolons else ",")
            columns = [original_text(c) for c in reader.fieldnames or []]
            missing = _REQUIRED - set(columns)
            if missing:
                raise InputError(f"{path} is not a results CSV of `screen folder` "
                                 f"(no column {', '.join(sorted(missing))})")
            reader.fieldnames = columns
            probabilities = _probability_columns(columns, classes)
            rows, lines = [], []
            for index, cells in enumerate(reader):
                if index >= MAX_ROWS:
                    raise InputError(f"{path} has more than {MAX_ROWS} rows")
                beat()
                cells = _decimal_points(cells, probabilities) if semicolons else cells
                rows.append(_finite(_usable(_row(cells, probabilities), cells, probabilities), "results CSV"))
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read {path}: {decode_problem(exc)}") from exc
    except (OSError, csv.Error) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    # In rank order whatever the file's order: a CSV sorted by image or patient in a spreadsheet
    # and saved would otherwise put its highest risks anywhere in the worklist. Rows without a
    # rank (errors) follow, in file order.
    rows = _listed_once(rows, lines)
    rows.sort(key=lambda row: (row.rank is None, row.rank or 0))
    # A flag column left empty (no operating point) is no flag at all for the reviewer.
    # "New" only tells the reviewer something when the run resumed: some rows new, some not.
    return Results(rows, CSV_SOURCE, has_flag=any(r.flag for r in rows),
                   has_new=any(r.new for r in rows) and any(r.new is False for r in rows),
                   bundle=next((r.bundle for r in rows if r.bundle), ""))


def risk_as_summed(row: ReportRow, malignant: list[str], identity: str) -> ReportRow:
    """An ok CSV row of the bundle ``identity`` whose risk is not the sum of its ``malignant``
    classes' probabilities becomes an error row saying so. Screening writes the risk as that sum of
    the written (rounded) probabilities: a risk retyped from 0.9 to 0.1 would otherwise draw a
    melanoma as a routine row near the bottom of the worklist. Rows of another bundle (its malignant
    classes may differ) and rows without every malignant column are left as they are."""
    if row.status != OK or row.risk is None or not same_bundle(identity, row.bundle) \
            or not all(name in row.probabilities for name in malignant):
        return row
    total = math.fsum(row.probabilities[name] for name in malignant)
    if abs(total - row.risk) <= (len(malignant) + 1) * 0.5 * 10.0 ** -DECIMALS + 1e-9:  # half a step each
        return row
    return ReportRow(rank=None, image=row.image, patient_id=row.patient_id, status=ERROR, warnings=row.warnings,
                     new=row.new, screened_at=row.screened_at, bundle=row.bundle,
                     error=f"risk '{row.risk:.{DECIMALS}f}' in the results CSV is not the sum of its malignant classes' "
                           f"probabilities ({', '.join(malignant)}: {total:.{DECIMALS}f}): edited?")


def _listed_once(rows: list[ReportRow], lines: list[int]) -> list[ReportRow]:
    """Each image once: an image on several rows (two runs' CSVs pasted together) becomes one error
    row naming its lines, in place of the first. Shown twice, one refer and one routine, nothing
    would say which is its result; `screen evaluate` refuses such a file."""
    where: dict[str, list[int]] = {}
    for row, line in zip(rows, lines):
        where.setdefault(row.image, []).append(line)
    once = []
    for row, line in zip(rows, lines):
        found = where[row.image]
        if len(found) == 1:
            once.append(row)
        elif line == found[0]:
            once.append(ReportRow(
                rank=None, image=row.image, patient_id=row.patient_id, status=ERROR, bundle=row.bundle,
                error=f"listed {len(found)} times in the results CSV (lines {', '.join(map(str, found))}): "
                      f"results of two runs pasted together? None of them is shown"))
    return once


def _probability_columns(columns: list[str], classes: list[str] | None) -> frozenset[str]:
    """The ``p_<class>`` columns of ``classes``: a clinic's own ``p_id`` copied by --keep-columns
    (before it was written ``csv_p_id``) is no class. Every ``p_`` column when the classes are not
    known, or the CSV lacks some of them (results of another bundle: its own classes are shown)."""
    if classes and all(f"p_{name}" in columns for name in classes):
        return frozenset(f"p_{name}" for name in classes)
    return frozenset(c for c in columns if c.startswith("p_"))


def _decimal_points(cells: dict[str | None, str | None], probabilities: frozenset[str]) -> dict[str | None, str | None]:
    """The number cells of a semicolon CSV with decimal points ('0,93' -> '0.93'); other cells as they are."""
    return {key: value.replace(",", ".") if key is not None and value is not None
            and (key in _NUMBER_COLUMNS or key in probabilities) else value for key, value in cells.items()}


def _row(cells: dict[str, str | None], probabilities: frozenset[str]) -> ReportRow:
    text = {key: original_text(value or "") for key, value in cells.items() if key is not None}
    rank = text.get("rank", "")
    new = text.get("new", "").strip().lower()
    return ReportRow(
        rank=_rank(rank),
        image=text.get("image", ""), patient_id=text.get("patient_id", ""),
        status=OK if text.get("status") == OK else ERROR,
        risk=_number(text.get("risk", "")),
        probabilities={key[2:]: value for key, cell in text.items()
                       if key in probabilities and (value := _number(cell)) is not None},
        lesion_area=_number(text.get("lesion_area", "")),
        error=text.get("error", ""),
        warnings=[w for w in text.get("warnings", "").split("; ") if w],
        flag=text.get("flag", ""),
        new=None if "new" not in text else new in ("1", "true", "yes", "new"),
        screened_at=text.get("screened_at", ""),
        bundle=text.get("bundle", ""),
    )


def read_journal(path: Path, class_names: list[str], patients: dict[str, str] | None = None,
                 threshold: float | None = None, beat: Callable[[], None] = lambda: None) -> Results:
    """Rows of a run's journal (a killed or unfinished run), ranked as the CSV would be.

    An image whose latest line is damaged is an error row naming that line, never its earlier
    line's result: that line was written before the image was screened again (its file or
    metadata changed, or it had failed), so it is the result of something no longer there.

    Args:
        path: the ``results.csv.journal`` file.
        class_names: the bundle's class codes, in the order of the journal's probabilities.
        patients: image -> patient id, when a patients CSV was given.
        threshold: the operating point's risk threshold; the journal holds no flags, so they are
            computed here as screening computes them (full-precision risk). None: no flags.

    Raises:
        InputError: the file is not a screening journal.
    """
    journal = _journal(path, beat)
    header = journal.header
    outcomes = [*journal.latest().values(), *(_damaged_row(image, number, damage)
                                               for image, (number, damage) in journal.damaged.items())]
    patients = patients or {}
    names = list(header.classes) or class_names
    ranked = rank_rows(ResultRow(o, patients.get(o.image, "")) for o in outcomes)
    # Names as the CSV shows them: the report's rows, pictures and page all use that form.
    rows = [_finite(ReportRow(
                rank=rank, image=display_name(r.outcome.image), patient_id=r.patient_id,
                status=r.outcome.status,
                risk=None if r.outcome.risk is None else round(r.outcome.risk, DECIMALS),
                probabilities=dict(zip(names, r.outcome.probabilities)),
                lesion_area=r.outcome.lesion_area, error=r.outcome.error,
                warnings=list(r.outcome.warnings), bundle=header.bundle, screened_at=r.outcome.screened_at,
                flag=_journal_flag(r.outcome, threshold),
                fingerprint=r.outcome.fingerprint or None), "journal")  # a damaged line's row says no screening
            for rank, r in ranked]
    return Results(rows, "journal (the run did not finish)", has_flag=any(r.flag for r in rows),
                   bundle=header.bundle, has_journal=True, notes=_damage_notes(Path(path), journal))


def _damaged_row(image: str, number: int, damage: Damage) -> Outcome:
    """The error row of an image whose latest journal line is damaged. Its fingerprint says no
    screening: no picture of an earlier one may stand for it."""
    return Outcome(image=image, fingerprint="", status=ERROR,
                   error=f"its latest journal line ({number}) {damage.said()}: no result "
                         f"shown, not even its earlier one")


def _damage_notes(path: Path, journal: _Journal, beside_csv: bool = False) -> list[str]:
    """One header line for the images whose latest line is damaged (shown as errors; or, beside
    its CSV, with the CSV's result, which that line may have replaced), and one for damaged lines
    that name no image (which may have hidden an image's newer result)."""
    notes = []
    if journal.damaged:
        lines = sorted(((number, image, damage) for image, (number, damage) in journal.damaged.items()),
                       key=lambda line: line[0])
        one = len(lines) == 1
        who = f"{display_name(lines[0][1])} is" if one else "those images are"
        consequence = (f"this report shows the CSV's result{'' if one else 's'}, which "
                       f"{'that line' if one else 'those lines'} may have replaced" if beside_csv else
                       f"{who} shown as an error, not with {'its' if one else 'their'} earlier result")
        notes.append(damaged_lines_note(path, lines, consequence, display_name))
    if journal.nameless:
        one = len(journal.nameless) == 1
        notes.append(damaged_lines_note(path, [(n, None, d) for n, d in journal.nameless],
                                        f"{'it names' if one else 'they name'} no image: an image whose newer "
                                        f"result was on {'it' if one else 'one'} may show its older result"))
    return notes



def _journal_flag(outcome: Outcome, threshold: float | None) -> str:
    if threshold is None or outcome.status != OK or outcome.risk is None or not math.isfinite(outcome.risk):
        return ""
    return flag(outcome.risk, threshold)


@dataclass
class _Journal:
    """A journal read for the report: its readable lines, and each image's latest line when damaged."""

    header: JournalHeader
    outcomes: list[Outcome]  # every readable line, in the order written
    damaged: dict[str, tuple[int, Damage]]  # image -> its latest line (number, why), where that is damaged
    nameless: list[tuple[int, Damage]]  # damaged lines that no longer say which image they were for

    def latest(self) -> dict[str, Outcome]:
        """Each image's latest line, where that line is readable (a later line wins)."""
        latest = {o.image: o for o in self.outcomes}
        return {image: o for image, o in latest.items() if image not in self.damaged}


def _journal(path: Path, beat: Callable[[], None] = lambda: None) -> _Journal:
    """The journal's header, its readable lines and the damaged lines that are an image's latest.

    Lines are checked as screening checks a line it reuses (``read_outcome``, and as `screen
    evaluate` reads them): a damaged number (a risk of 1.7, a NaN, a risk that is no longer the
    sum of the malignant probabilities the header names, a line whose checksum no longer matches)
    or a torn line never reaches the page as a result.
    """
    try:
        data = read_pieces(Path(path), beat)  # beat: a piece read, for a watched caller
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    header = JournalHeader.from_json(header_line(data).decode("utf-8", errors="replace"))
    if header is None:
        raise InputError(f"{path} is not a screening journal")
    journal = _Journal(header, [], {}, [])
    for number, item in outcome_lines(data, tuple(header.classes), header.malignant or None,
                                      checksummed=bool(header.line_checksum)):
        if isinstance(item, Outcome):
            journal.outcomes.append(item)
            journal.damaged.pop(item.image, None)
        elif item.image is not None:
            journal.damaged[item.image] = (number, item)
        else:
            journal.nameless.append((number, item))
    return journal


@dataclass(frozen=True)
class JournalScreening:
    """The screening a journal holds last for an image: what the run's pictures were made for."""

    image: str  # displayed name
    fingerprint: str
    bundle: str


def journal_screenings(results: Path) -> list[JournalScreening]:
    """The latest screening of each image in the journal of ``results`` ([] without one): the
    pictures a run still under way (or killed, to be resumed) will want."""
    results = Path(results)
    path = results if results.name.endswith(".journal") else journal_path(results)
    try:
        journal = _journal(path)
    except InputError:
        return []
    # Only a readable line says which screening an image's pictures are of: an image whose latest
    # line is damaged keeps none (the next run screens it again).
    latest = {display_name(image): o for image, o in journal.latest().items()}
    return [JournalScreening(image, o.fingerprint, journal.header.bundle) for image, o in latest.items()]


def _match_journal(results: Results, csv_path: Path, beat: Callable[[], None] = lambda: None) -> Results:
    """Give each CSV row the fingerprint of its screening, from the journal beside the CSV.

    The CSV has no fingerprints; the journal has one per screening, and keeps the lines of
    earlier runs until a run finishes. A row is matched to the journal line of the same image
    screened at the same second (``screened_at``) with the same result, so a run that started
    after the CSV was written (still running, or killed before writing its CSV) cannot lend its
    screening of a replaced file to the CSV's row. When they disagree the report says so.
    """
    try:
        journal = _journal(journal_path(csv_path), beat)
    except InputError:
        return results  # no journal (or not one): nothing to check the pictures against
    results.has_journal = True
    header = journal.header
    by_time: dict[tuple[str, str, str], list[Outcome]] = {}
    for o in journal.outcomes:
        by_time.setdefault((display_name(o.image), o.screened_at, header.bundle), []).append(o)
    # An image whose latest line is damaged has no latest screening to lend a CSV row without
    # screening times: its earlier line may be of a file since replaced.
    latest = {display_name(image): o for image, o in journal.latest().items()}
    unmatched = 0
    for row in results.rows:
        if row.screened_at:
            # A journal of another bundle (an upgrade night) holds none of this CSV's screenings.
            bundle = header.bundle if same_bundle(header.bundle, row.bundle) else row.bundle
            found = {o.fingerprint for o in by_time.get((row.image, row.screened_at, bundle), ())
                     if _same_result(o, row)}
            row.fingerprint = found.pop() if len(found) == 1 else None  # none, or two that cannot be told apart
            unmatched += row.fingerprint is None and row.status == OK  # error rows have no pictures anyway
        elif row.image in latest:  # a CSV from before screened_at: the journal's latest is all there is
            row.fingerprint = latest[row.image].fingerprint
    shown = {row.image: row for row in results.rows}
    newer = sum(1 for image, o in latest.items()
                if image not in shown or (shown[image].screened_at and (
                    o.screened_at != shown[image].screened_at or o.fingerprint != shown[image].fingerprint)))
    results.notes.extend(_damage_notes(journal_path(csv_path), journal, beside_csv=True))
    journal = journal_path(csv_path).name
    if newer:
        results.notes.append(
            f"the journal {journal} holds {newer} result{'s' if newer != 1 else ''} that this CSV does not "
            f"(a run that did not finish, or is still running): this report shows the CSV's results; "
            f"`screen report {journal}` shows the journal's")
    if unmatched:
        results.notes.append(
            f"{unmatched} row{'s' if unmatched != 1 else ''} of this CSV {'are' if unmatched != 1 else 'is'} no "
            f"longer in its journal {journal}, which would say which file was screened: "
            f"{'they are' if unmatched != 1 else 'it is'} shown without pictures")
    return results


def same_bundle(identity: str, bundle: str) -> bool:
    """Whether a CSV's ``bundle`` cell names ``identity`` (a journal's, a picture's): exactly, or as
    the bare ``name@version`` a CSV from before bundle identities wrote; a CSV without the column
    names any bundle. An empty ``identity`` (a picture recorded before bundles were) matches no
    named bundle."""
    return not bundle or identity == bundle or identity.startswith(bundle + "+")


def _same_result(outcome: Outcome, row: ReportRow) -> bool:
    """Whether a journal line gave the CSV row's result (its risk as the CSV writes it)."""
    if row.status != OK:
        return outcome.status != OK
    return (outcome.status == OK and outcome.risk is not None and row.risk is not None
            and round(outcome.risk, DECIMALS) == row.risk)


def read_results(path: Path, class_names: list[str], patients: dict[str, str] | None = None,
                 threshold: float | None = None, stall_s: float = DEFAULT_STALL_S) -> Results:
    """A results CSV, or the journal beside it (or named) when the CSV was never written.

    ``threshold`` flags the journal's rows (a CSV carries its own flags). The files are read in a
    watched thread (:func:`screening.stalled_reads.while_progressing`): results on a share that
    stops answering are given up once nothing has come for ``stall_s`` seconds, however long a
    large CSV takes in all.

    Raises:
        InputError: neither exists, the file is not a run's output, or its drive stopped answering.
    """
    path = Path(path)
    return while_progressing(lambda beat: _read_results(path, class_names, patients, threshold, beat), stall_s,
                             lambda: results_stalled(path, stall_s))


def results_stalled(path: Path, stall_s: float) -> InputError:
    """The one line of results whose drive stopped answering while they were read (exit 2)."""
    return InputError(stalled_line(f"the results {path}", "they were being read", stall_s))


def _read_results(path: Path, class_names: list[str], patients: dict[str, str] | None, threshold: float | None,
                  beat: Callable[[], None]) -> Results:
    if path.name.endswith(".journal") and path.is_file():
        return read_journal(path, class_names, patients, threshold, beat)
    beat()
    if path.is_file():
        return _match_journal(read_results_csv(path, beat, class_names), path, beat)
    beat()
    if journal_path(path).is_file():
        return read_journal(journal_path(path), class_names, patients, threshold, beat)
    raise InputError(f"{path} not found (nor its journal {journal_path(path).name}): "
                     f"give the --out of a `screen folder` run")
