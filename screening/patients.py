"""Screening inputs on the patient side: read the metadata CSV and find each image's row."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .errors import InputError, MetadataError
from .results import display_name
from .stalled_reads import DEFAULT_STALL_S, read_within, stalled_line

# Accepted header names of each field, in priority order: the first present wins.
KEY_COLUMNS = ("image", "image_id", "image_name", "isic_id")
FIELD_COLUMNS = {
    "patient_id": ("patient_id",),
    "age": ("age", "age_approx"),
    "sex": ("sex",),
    "site": ("site", "anatom_site_general", "anatom_site_general_challenge", "localization"),
}
_DELIMITERS = (",", ";", "\t")
# Match levels of a key against an image path, most specific first: every exact spelling
# (letter case kept, Unicode NFC on both sides) before any case-folded one, so that of two
# files differing only in case each gets its own row, and an exact key always beats a folded one.
_SPELLINGS = ("path", "path without extension", "file name", "file stem")
_LEVELS = (*_SPELLINGS, *(f"{spelling}, any case" for spelling in _SPELLINGS))
_EXACT_LEVELS = len(_SPELLINGS)
# Lines named in an encoding warning; the rest are counted.
_LINES_SHOWN = 5
# A patients CSV is a few MB (ISIC 2020's 33,126 rows: 2 MB); a file far larger is the wrong file
# (a disk image, a video, /dev/zero), and reading it whole would take the machine's memory, or
# never end, instead of saying so.
MAX_METADATA_BYTES = 512 * 2**20


# slots: one instance per image lives for the whole run, so its size is per-image memory.
@dataclass(frozen=True, slots=True)
class PatientRow:
    """One metadata row; values are the raw cell text (stripped), None when empty or absent."""

    key: str  # the image cell as written in the CSV
    patient_id: str | None
    age: str | None
    sex: str | None
    site: str | None
    extra: dict[str, str]  # every other column, by original header, in file order
    line: int  # line number in the CSV, for messages


# slots: one instance per image lives for the whole run, so its size is per-image memory.
@dataclass(frozen=True, slots=True)
class Match:
    """The metadata row of one image (None when there is none) and what the user should know."""

    row: PatientRow | None
    warnings: list[str] = field(default_factory=list)
    others: tuple[PatientRow, ...] = ()  # less specific keys that fit this image too (row wins over them)


def _normal_header(name: str) -> str:
    """'  Image ID ' -> 'image_id': headers compare case-, space- and hyphen-insensitively."""
    return re.sub(r"[\s\-]+", "_", name.strip()).lower()


def _normal_key(key: str) -> str:
    """A path-like key in one spelling: Unicode NFC (macOS file names are NFD, spreadsheets
    NFC), forward slashes, no leading './' or '/'; letter case is kept."""
    text = re.sub(r"/+", "/", unicodedata.normalize("NFC", key.strip()).replace("\\", "/"))
    while text.startswith("./"):
        text = text[2:]
    return text.lstrip("/")


def _folded(key: str) -> str:
    """An exact key (from ``_normal_key``) in any letter case."""
    return unicodedata.normalize("NFC", key.casefold())


def _key_form(key: str, level: int) -> str:
    """The spelling of an exact key that is compared at ``level``."""
    return key if level < _EXACT_LEVELS else _folded(key)


def _spellings(path: str) -> tuple[str, str, str, str]:
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    suffix = name[dot:] if dot > 0 else ""
    return path, path[: len(path) - len(suffix)], name, name[: len(name) - len(suffix)]


def _forms(image: str) -> tuple[str, ...]:
    """The spellings of an image path a key may use, in the order of ``_LEVELS``."""
    path = _normal_key(image)
    return (*_spellings(path), *_spellings(_folded(path)))


# What the OS puts in a file name for each byte that is not UTF-8 (Python's surrogateescape).
_UNDECODED = re.compile("[\udc80-\udcff]")
# The encodings a name that is not UTF-8 is read in, as a metadata CSV that is not UTF-8 is read
# (_ansi): Windows-1252, and Latin-1 for the CSV whose bytes Windows-1252 leaves undefined.
_LEGACY_ENCODINGS = ("cp1252", "latin-1")


def _names(image: str) -> list[str]:
    """An image path as the OS decoded it, then, when a part of it is not UTF-8, as it reads
    with that part's bytes in Windows-1252 and in Latin-1: the text a metadata CSV holding the
    same bytes (read as ANSI) has for its key. ``caf\\xe9.jpg`` (Latin-1, from an old camera or
    Windows share) is ``caf\\udce9.jpg`` to Python and ``café.jpg`` in the CSV.

    Only the path's parts (folders, file name) that are not UTF-8 are read again: a UTF-8 folder
    keeps its name. Every spelling of an image is that image's: a key fitting the UTF-8 name of
    one file and the re-read name of another fits two images, ambiguous as any such key.
    """
    if not _UNDECODED.search(image):
        return [image]
    names = [image]
    for encoding in _LEGACY_ENCODINGS:
        name = "/".join(_read_as(part, encoding) for part in image.split("/"))
        if name not in names:
            names.append(name)
    return names


def _read_as(part: str, encoding: str) -> str:
    """A path part's bytes in ``encoding`` when the part is not UTF-8 (else the part itself)."""
    if not _UNDECODED.search(part):
        return part
    try:
        data = part.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no OS name decodes to: leave it alone
        return part
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:  # a byte undefined in Windows-1252: Latin-1 as _ansi reads it
        return data.decode("latin-1")


def _listing(images: list[str], limit: int = 3) -> str:
    images = [display_name(image) for image in images]
    shown = ", ".join(images[:limit])
    return shown if len(images) <= limit else f"{shown} and {len(images) - limit} more"


class PatientTable:
    """The rows of a metadata CSV, indexed by image key; built by :func:`read_patients`."""

    def __init__(self, path: Path, rows: list[PatientRow], counts: dict[str, int],
                 columns_found: dict[str, str], extra_columns: list[str],
                 warnings: list[str], images: Iterable[str] | None = None,
                 repeats: dict[str, list[tuple[int, dict[str, str]]]] | None = None,
                 cut: CutRow | None = None) -> None:
        self.path = path
        self.rows = rows  # one per distinct key, the first row of each, in file order
        self.columns_found = columns_found  # field ('key', 'age', ...) -> original header
        self.extra_columns = extra_columns  # original headers of the other columns
        self.warnings = warnings  # about the file as a whole, for the run summary
        self._by_key = {_normal_key(row.key): row for row in rows}
        self._by_folded: dict[str, list[str]] = {}  # any-case spelling -> exact keys, file order
        for key in self._by_key:
            self._by_folded.setdefault(_folded(key), []).append(key)
        self._counts = counts
        # normalised key -> (line, extra cells) of each row after the first: screening uses the
        # first row (with a warning); a labels file must not hide a second diagnosis behind it.
        self.repeats = repeats or {}
        # key -> number of rows, for keys written on more than one row
        self.duplicate_keys = {self._by_key[k].key: n for k, n in counts.items() if n > 1}
        self.cut = cut  # the last record, when the file ends mid-row
        self._matches = self._match_all(list(images)) if images is not None else {}

    def __len__(self) -> int:
        return len(self.rows)

    def later_rows(self, row: PatientRow) -> list[tuple[int, dict[str, str]]]:
        """(line, extra cells) of the rows after ``row`` with the same key, in file order."""
        return self.repeats.get(_normal_key(row.key), [])

    def _match_all(self, images: list[str]) -> dict[str, Match]:
        """Match every image at once, so a key that fits several images is seen as ambiguous."""
        index: list[dict[str, list[str]]] = [{} for _ in _LEVELS]
        for image in images:
            for name in _names(image):
                for level, form in enumerate(_forms(name)):
                    fits = index[level].setdefault(form, [])
                    if fits[-1:] != [image]:  # two spellings of one image, alike at this level
                        fits.append(image)
        fitting: dict[str, list[tuple[int, str]]] = {}  # image -> (level, key) of its keys
        ambiguous: dict[str, list[str]] = {}  # image -> keys that fit it and other images too
        for key in self._by_key:
            level, fits = _fit(key, index)
            if level is None:
                continue
            if len(set(fits)) > 1:
                for image in fits:
                    ambiguous.setdefault(image, []).append(key)
            else:
                fitting.setdefault(fits[0], []).append((level, key))
        return {image: self._result(sorted(fitting.get(image, [])), ambiguous.get(image, []),
                                    index) for image in images}

    def _result(self, fitting: list[tuple[int, str]], ambiguous: list[str],
                index: list[dict[str, list[str]]]) -> Match:
        if fitting:
            tied = [key for level, key in fitting if level == fitting[0][0]]
            if len(tied) > 1:  # e.g. 'IMG.jpg' and 'img.JPG' for img.jpg: no key is more exact
                keys = " and ".join(f"'{self._by_key[key].key}'" for key in tied)
                return Match(None, [f"no metadata row: keys {keys} fit this image equally well "
                                    f"({_LEVELS[fitting[0][0]]})"])
            row = self._by_key[fitting[0][1]]
            count = self._counts[fitting[0][1]]
            warnings = [f"{count} metadata rows for key '{row.key}', used the first"] \
                if count > 1 else []
            if self.cut is not None and row.line == self.cut.line:
                warnings.append(f"its metadata row (line {row.line}) has {self.cut.cells} of {self.cut.of} cells and "
                                f"the file ends there without a line break: was the file copied while it was "
                                f"written? Check this row's values")
            if len(fitting) > 1:
                others = ", ".join(f"'{self._by_key[key].key}'" for _, key in fitting[1:])
                verb = "key {} also fits" if len(fitting) == 2 else "keys {} also fit"
                warnings.append(f"metadata {verb.format(others)} this image, used the more "
                                f"specific '{row.key}'")
            return Match(row, warnings, tuple(self._by_key[key] for _, key in fitting[1:]))
        if ambiguous:
            key = ambiguous[0]
            fits = sorted(set(_fit(key, index)[1]))
            return Match(None, [f"no metadata row: key '{self._by_key[key].key}' is ambiguous, "
                                f"it matches {len(fits)} images ({_listing(fits)})"])
        return Match(None, ["no metadata row"])

    def match(self, image_rel_path: str) -> Match:
        """The metadata row of one image.

        A key matches an image when it equals the image's relative path, that path without its
        extension, the file name or the file stem (either slash style; Unicode NFC on both
        sides; a name that is not UTF-8 also as Windows-1252 or Latin-1 text, see ``_names``);
        the most specific match wins, and every exact-case match beats every
        any-case one. A key that fits several of the images given to :func:`read_patients`
        (e.g. one stem in two sub-folders) is ambiguous and not used, as are two keys that fit
        one image equally well.

        Args:
            image_rel_path: The image path relative to the images folder, as discovered.

        Returns:
            The row (None when no key matches) and warnings for that image's result row.
        """
        known = self._matches.get(image_rel_path)
        return known if known is not None else self._match_one(image_rel_path)

    def _match_one(self, image: str) -> Match:
        """Match an image on its own: only the key spellings count, no other image can compete."""
        levels: dict[str, int] = {}
        for name in _names(image):
            for level, form in enumerate(_forms(name)):
                keys = ([form] if form in self._by_key else []) if level < _EXACT_LEVELS \
                    else self._by_folded.get(form, [])
                for key in keys:
                    levels[key] = min(level, levels.get(key, level))
        return self._result(sorted((level, key) for key, level in levels.items()), [], [])

    def unmatched_keys(self, matched: Iterable[str]) -> list[str]:
        """Keys, in file order, of the rows that no image used (``matched`` = the keys used)."""
        used = {_normal_key(key) for key in matched}
        return [row.key for row in self.rows if _normal_key(row.key) not in used]


def _fit(key: str, index: list[dict[str, list[str]]]) -> tuple[int | None, list[str]]:
    """The most specific level at which an exact key fits any image, and the images it fits."""
    for level in range(len(_LEVELS)):
        fits = index[level].get(_key_form(key, level))
        if fits:
            return level, fits
    return None, []


def _decode(path: Path, data: bytes, warnings: list[str]) -> str:
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):  # UTF-32: its mark begins as UTF-16's
        try:
            return data.decode("utf-32")
        except UnicodeDecodeError as error:
            raise MetadataError(f"cannot read metadata CSV {path}: broken UTF-32 text "
                                f"({error.reason})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text" export
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise MetadataError(f"cannot read metadata CSV {path}: broken UTF-16 text "
                                f"({error.reason})") from None
    if b"\x00" in data:
        raise MetadataError(f"cannot read metadata CSV {path}: it contains binary data, not "
                            "text (save the sheet as CSV)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Not UTF-8 throughout. Decide for the file from the evidence of its lines: lines with
    # valid multi-byte UTF-8 say "UTF-8" (ANSI text almost never forms such sequences), lines
    # that fail say "ANSI". One stray byte must not turn every accented name of a UTF-8 file
    # into mojibake (and unmatched keys), so a UTF-8 file keeps UTF-8 and only its failing
    # lines are read as ANSI; the warning names them.
    lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    failing, utf8_lines = [], 0
    for number, line in enumerate(lines, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            failing.append(number)
            continue
        utf8_lines += not line.isascii()
    shown = _line_list(failing)
    if utf8_lines >= len(failing):
        warnings.append(f"metadata CSV {path} is UTF-8 but {shown} not: read "
                        f"{'it' if len(failing) == 1 else 'them'} as Windows-1252 (check the "
                        f"names there)")
        ansi = set(failing)
        return "\n".join(_ansi(line)[0] if number in ansi else line.decode("utf-8")
                         for number, line in enumerate(lines, start=1))
    # Excel on Windows saves "CSV" in the ANSI code page; Latin-1 reads any byte at all.
    text, label = _ansi(data.removeprefix(b"\xef\xbb\xbf"))  # a BOM would read as "ï»¿" before the header
    evidence = f"{shown} not UTF-8" + (f", only {utf8_lines} {'is' if utf8_lines == 1 else 'are'}"
                                       if utf8_lines else "")
    warnings.append(f"metadata CSV {path} is not UTF-8 ({evidence}); read it as {label}")
    return text


def _ansi(data: bytes) -> tuple[str, str]:
    """Windows-1252 text (Latin-1 where a byte is undefined in 1252) and the encoding's name."""
    try:
        return data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "Latin-1"


def _line_list(numbers: list[int]) -> str:
    """'line 7 is' / 'lines 3, 9 and 4 more are': which lines, for a warning."""
    if len(numbers) == 1:
        return f"line {numbers[0]} is"
    shown = ", ".join(map(str, numbers[:_LINES_SHOWN]))
    more = f" and {len(numbers) - _LINES_SHOWN} more" if len(numbers) > _LINES_SHOWN else ""
    return f"lines {shown}{more} are"


def _sniff_delimiter(header_line: str) -> str:
    """The delimiter that splits the header into the most columns (comma on a tie)."""
    counts = {d: len(next(csv.reader([header_line], delimiter=d))) for d in _DELIMITERS}
    return max(_DELIMITERS, key=lambda d: counts[d])


def _pick(normal: list[str], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in normal:
            return normal.index(name)
    return None


@dataclass(frozen=True)
class CutRow:
    """The last record of a file that ends mid-row: fewer cells than the header and no line break."""

    line: int
    cells: int
    of: int


def _records(path: Path, text: str) -> tuple[list[str], list[tuple[int, list[str]]], CutRow | None]:
    """(header, [(line number, cells)], the last record if the file ends mid-row) of non-blank
    records, each padded to the header."""
    stream = io.StringIO(text, newline="")
    first = next((line for line in text.splitlines() if line.strip()), "")
    if first.lower().startswith("sep=") and len(first.strip()) == 5:
        # Excel's delimiter hint line: trust it, and do not take it for the header.
        delimiter = first.strip()[4]
        stream = io.StringIO(text[text.index(first) + len(first):].lstrip("\r\n"), newline="")
    else:
        delimiter = _sniff_delimiter(first)
    reader = csv.reader(stream, delimiter=delimiter, strict=True)
    header: list[str] | None = None
    records: list[tuple[int, list[str]]] = []
    last_cells = 0  # cells of the last record as written, before padding
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = cells
                continue
            last_cells = len(cells)
            if len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
                raise MetadataError(f"cannot read metadata CSV {path}: line {reader.line_num} "
                                    f"has {len(cells)} cells but the header has {len(header)}")
            records.append((reader.line_num, (cells + [""] * len(header))[: len(header)]))
    except csv.Error as error:
        raise MetadataError(f"cannot read metadata CSV {path}: line {reader.line_num}: "
                            f"{error}") from None
    if header is None:
        raise MetadataError(f"cannot read metadata CSV {path}: the file is empty")
    # An export still being written ends mid-row ('B,4' of 'B,45,male,back'): a short last record
    # without a line break. It is still used (a short row may be typed so), with a warning.
    cut = None
    if records and last_cells < len(header) and not text.endswith(("\n", "\r")):
        cut = CutRow(records[-1][0], last_cells, len(header))
    return header, records, cut


def column_field(name: str) -> str:
    """The field a ``--column FIELD=HEADER`` names ('image' and 'key' are the key column).

    Raises:
        InputError: not one of the fields; the message lists them.
    """
    field_name = "key" if name.strip().lower() in ("image", "key") else name.strip().lower()
    if field_name != "key" and field_name not in FIELD_COLUMNS:
        raise InputError(f"--column {name}=...: no such field; choose one of image, "
                         f"{', '.join(FIELD_COLUMNS)}")
    return field_name


def _option_name(field_name: str) -> str:
    """A field as --column names it: the key column is 'image'."""
    return "image" if field_name == "key" else field_name


def _columns(path: Path, header: list[str], warnings: list[str],
             overrides: dict[str, str] | None = None) -> tuple[dict[str, int], list[int]]:
    """(field -> column index, extra column indices); raises when there is no key column.

    ``overrides`` (field -> header, from ``--column``) name a clinic's own columns; they win
    over the usual names.
    """
    # As shown in messages: a quoted header may hold a line break, and an error is one line.
    original = [" ".join(name.split()) for name in header]
    normal = [_normal_header(name) for name in header]
    for position, name in enumerate(normal):
        if name and normal.index(name) != position:
            raise MetadataError(f"cannot read metadata CSV {path}: column "
                                f"'{original[position]}' appears twice")
    chosen: dict[str, int] = {}
    for field_name, wanted in (overrides or {}).items():
        if _normal_header(wanted) not in normal:
            raise MetadataError(f"--column {'image' if field_name == 'key' else field_name}={wanted}: "
                                f"metadata CSV {path} has no column '{wanted}'; found: "
                                f"{', '.join(original)}")
        chosen[field_name] = normal.index(_normal_header(wanted))
    key = chosen["key"] if "key" in chosen else _pick(normal, KEY_COLUMNS)
    if key is None:
        raise MetadataError(f"metadata CSV {path} has no image column: expected one of "
                            f"{', '.join(KEY_COLUMNS)}; found: {', '.join(original)}")
    fields = {"key": key}
    owner = {key: "key"}  # column -> the field that has it
    # A column named for one field by --column cannot be another's: the second was dropped without
    # a word (--column sex=Alter beside age=Alter left every sex unknown).
    for name, index in chosen.items():
        if name != "key":
            if index in owner:
                raise MetadataError(f"--column {name}={overrides[name]}: column '{original[index]}' is already "
                                    f"the {_option_name(owner[index])} column")
            fields[name], owner[index] = index, name
    for name, aliases in FIELD_COLUMNS.items():
        index = None if name in fields else _pick(normal, aliases)
        if index is None:
            continue
        if index in owner and owner[index] in chosen:  # --column sex=age: the file's age column
            raise MetadataError(f"--column {_option_name(owner[index])}={overrides[owner[index]]}: column "
                                f"'{original[index]}' is already the {name} column")
        if index not in owner:
            fields[name], owner[index] = index, name
    used = set(fields.values())
    extra = []
    for position, name in enumerate(normal):
        if position in used:
            continue
        if not name:
            warnings.append(f"column {position + 1} of metadata CSV {path} has no header and "
                            "was ignored")
            continue
        extra.append(position)
    return fields, extra


def _rows(records: list[tuple[int, list[str]]], fields: dict[str, int],
          extra: dict[str, int]) -> tuple[list[PatientRow], dict[str, int], int, dict[str, list[tuple[int, dict[str, str]]]]]:
    """(first row of each key, rows per normalised key, rows without a key, and the line and
    extra cells of every later row of a repeated key)."""
    rows: list[PatientRow] = []
    counts: dict[str, int] = {}
    repeats: dict[str, list[tuple[int, dict[str, str]]]] = {}
    blank_keys = 0
    for line, cells in records:
        value = {name: cells[index].strip() or None for name, index in fields.items()}
        others = {name: cells[index].strip() for name, index in extra.items()}
        key = value["key"]
        if key is None:
            blank_keys += 1
            continue
        normal = _normal_key(key)
        counts[normal] = counts.get(normal, 0) + 1
        if counts[normal] == 1:
            rows.append(PatientRow(
                key=key, patient_id=value.get("patient_id"), age=value.get("age"),
                sex=value.get("sex"), site=value.get("site"), line=line, extra=others))
        else:
            repeats.setdefault(normal, []).append((line, others))
    return rows, counts, blank_keys, repeats


def _read_bytes(path: Path, stall_s: float) -> bytes:
    """The file's bytes, read in a watched thread: a share that stops answering (a read blocked in
    the kernel cannot be stopped) gives up after ``stall_s`` seconds without a piece read.

    Raises:
        MetadataError: nothing came for ``stall_s`` seconds, or the file is over MAX_METADATA_BYTES.
        OSError: the file's own errors.
    """
    limit = MAX_METADATA_BYTES
    data = read_within(path, stall_s, lambda: MetadataError(
        stalled_line(f"the metadata CSV {display_name(str(path))}", "it was being read", stall_s)), limit + 1)
    if len(data) > limit:
        size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 2**10} KiB"
        raise MetadataError(f"cannot read metadata CSV {path}: it is larger than {size}, which no patients "
                            f"CSV is (is it the right file?)")
    return data


def read_patients(path: Path, *, images: Iterable[str] | None = None,
                  columns: dict[str, str] | None = None, stall_s: float = DEFAULT_STALL_S) -> PatientTable:
    """Read a patient metadata CSV.

    Headers are matched case-insensitively (spaces and hyphens count as '_'); the file may be
    UTF-8 (with or without BOM), UTF-16 with BOM, or Windows-1252/Latin-1 (with a warning);
    comma, semicolon or tab separated. Every cell stays text, so '0012' stays '0012'.

    Args:
        path: The CSV file.
        images: The relative paths of all images to be screened. Give them so that a key
            fitting several images (one stem in two sub-folders) is reported as ambiguous
            instead of being used for each of them.
        columns: field ('key', 'patient_id', 'age', 'sex', 'site') -> the CSV's header for it,
            for a clinic's own column names (``--column age=Alter``).
        stall_s: Seconds to wait for a file on a drive that stopped answering (``--decode-timeout``).

    Returns:
        The table; the first row of each key wins, later duplicates only count.

    Raises:
        MetadataError: The file is missing, unreadable, not a CSV, empty, or has no key column,
            or its drive stopped answering while it was read.
    """
    path = Path(path)
    try:
        data = _read_bytes(path, stall_s)
    except FileNotFoundError:
        raise MetadataError(f"metadata file not found: {path}") from None
    except IsADirectoryError:
        raise MetadataError(f"cannot read metadata CSV {path}: it is a folder") from None
    except OSError as error:
        raise MetadataError(f"cannot read metadata CSV {path}: {error.strerror}") from None
    warnings: list[str] = []
    header, records, cut = _records(path, _decode(path, data, warnings))
    if cut is not None:
        warnings.append(f"metadata CSV {path} ends mid-row (line {cut.line} has {cut.cells} of {cut.of} cells and "
                        f"no line break): was it copied while it was written?")
    fields, extra = _columns(path, header, warnings, columns)
    names = [name.strip() for name in header]
    rows, counts, blank_keys, repeats = _rows(records, fields, {names[i]: i for i in extra})
    if blank_keys:
        warnings.append(f"{blank_keys} metadata row{'s' if blank_keys > 1 else ''} with an "
                        f"empty {names[fields['key']]} cell skipped")
    columns_found = {name: names[index] for name, index in fields.items()}
    return PatientTable(path, rows, counts, columns_found, [names[i] for i in extra],
                        warnings, images, repeats, cut)
