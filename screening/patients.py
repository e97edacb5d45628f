"""Screening inputs on the patient side: read the metadata CSV and find each image's row."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .errors import MetadataError

# Accepted header names of each field, in priority order: the first present wins.
KEY_COLUMNS = ("image", "image_id", "image_name", "isic_id")
FIELD_COLUMNS = {
    "patient_id": ("patient_id",),
    "age": ("age", "age_approx"),
    "sex": ("sex",),
    "site": ("site", "anatom_site_general", "anatom_site_general_challenge", "localization"),
}
_DELIMITERS = (",", ";", "\t")
# Match levels of a key against an image path, most specific first.
_LEVELS = ("path", "path without extension", "file name", "file stem")


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


def _normal_header(name: str) -> str:
    """'  Image ID ' -> 'image_id': headers compare case-, space- and hyphen-insensitively."""
    return re.sub(r"[\s\-]+", "_", name.strip()).lower()


def _normal_key(key: str) -> str:
    """A path-like key in one spelling: forward slashes, no leading './' or '/', any case."""
    text = re.sub(r"/+", "/", key.strip().replace("\\", "/"))
    while text.startswith("./"):
        text = text[2:]
    return text.lstrip("/").casefold()


def _forms(image: str) -> tuple[str, str, str, str]:
    """The spellings of an image path a key may use, in the order of ``_LEVELS``."""
    path = _normal_key(image)
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    suffix = name[dot:] if dot > 0 else ""
    return path, path[: len(path) - len(suffix)], name, name[: len(name) - len(suffix)]


def _listing(images: list[str], limit: int = 3) -> str:
    shown = ", ".join(images[:limit])
    return shown if len(images) <= limit else f"{shown} and {len(images) - limit} more"


class PatientTable:
    """The rows of a metadata CSV, indexed by image key; built by :func:`read_patients`."""

    def __init__(self, path: Path, rows: list[PatientRow], counts: dict[str, int],
                 columns_found: dict[str, str], extra_columns: list[str],
                 warnings: list[str], images: Iterable[str] | None = None) -> None:
        self.path = path
        self.rows = rows  # one per distinct key, the first row of each, in file order
        self.columns_found = columns_found  # field ('key', 'age', ...) -> original header
        self.extra_columns = extra_columns  # original headers of the other columns
        self.warnings = warnings  # about the file as a whole, for the run summary
        self._by_key = {_normal_key(row.key): row for row in rows}
        self._counts = counts
        # key -> number of rows, for keys written on more than one row
        self.duplicate_keys = {self._by_key[k].key: n for k, n in counts.items() if n > 1}
        self._matches = self._match_all(list(images)) if images is not None else {}

    def __len__(self) -> int:
        return len(self.rows)

    def _match_all(self, images: list[str]) -> dict[str, Match]:
        """Match every image at once, so a key that fits several images is seen as ambiguous."""
        index: list[dict[str, list[str]]] = [{} for _ in _LEVELS]
        for image in images:
            for level, form in enumerate(_forms(image)):
                index[level].setdefault(form, []).append(image)
        fitting: dict[str, list[tuple[int, str]]] = {}  # image -> (level, key) of its keys
        ambiguous: dict[str, list[str]] = {}  # image -> keys that fit it and other images too
        for key in self._by_key:
            level, fits = next(((lvl, index[lvl][key]) for lvl in range(len(_LEVELS))
                                if key in index[lvl]), (None, []))
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
            row = self._by_key[fitting[0][1]]
            count = self._counts[fitting[0][1]]
            warnings = [f"{count} metadata rows for key '{row.key}', used the first"] \
                if count > 1 else []
            if len(fitting) > 1:
                others = ", ".join(f"'{self._by_key[key].key}'" for _, key in fitting[1:])
                verb = "key {} also fits" if len(fitting) == 2 else "keys {} also fit"
                warnings.append(f"metadata {verb.format(others)} this image, used the more "
                                f"specific '{row.key}'")
            return Match(row, warnings)
        if ambiguous:
            key = ambiguous[0]
            fits = sorted(set(next(index[lvl][key] for lvl in range(len(_LEVELS))
                                   if key in index[lvl])))
            return Match(None, [f"no metadata row: key '{self._by_key[key].key}' is ambiguous, "
                                f"it matches {len(fits)} images ({_listing(fits)})"])
        return Match(None, ["no metadata row"])

    def match(self, image_rel_path: str) -> Match:
        """The metadata row of one image.

        A key matches an image when it equals the image's relative path, that path without its
        extension, the file name or the file stem (either slash style, any letter case); the
        most specific match wins. A key that fits several of the images given to
        :func:`read_patients` (e.g. one stem in two sub-folders) is ambiguous and not used.

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
        for level, form in enumerate(_forms(image)):
            if form in self._by_key:
                levels.setdefault(form, level)
        return self._result(sorted((level, key) for key, level in levels.items()), [], [])

    def unmatched_keys(self, matched: Iterable[str]) -> list[str]:
        """Keys, in file order, of the rows that no image used (``matched`` = the keys used)."""
        used = {_normal_key(key) for key in matched}
        return [row.key for row in self.rows if _normal_key(row.key) not in used]


def _decode(path: Path, data: bytes, warnings: list[str]) -> str:
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
    # Excel on Windows saves "CSV" in the ANSI code page; Latin-1 reads any byte at all.
    try:
        text, label = data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        text, label = data.decode("latin-1"), "Latin-1"
    warnings.append(f"metadata CSV {path} is not UTF-8; read it as {label}")
    return text


def _sniff_delimiter(header_line: str) -> str:
    """The delimiter that splits the header into the most columns (comma on a tie)."""
    counts = {d: len(next(csv.reader([header_line], delimiter=d))) for d in _DELIMITERS}
    return max(_DELIMITERS, key=lambda d: counts[d])


def _pick(normal: list[str], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in normal:
            return normal.index(name)
    return None


def _records(path: Path, text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, cells)]) of non-blank records, each padded to the header."""
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
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = cells
                continue
            if len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
                raise MetadataError(f"cannot read metadata CSV {path}: line {reader.line_num} "
                                    f"has {len(cells)} cells but the header has {len(header)}")
            records.append((reader.line_num, (cells + [""] * len(header))[: len(header)]))
    except csv.Error as error:
        raise MetadataError(f"cannot read metadata CSV {path}: line {reader.line_num}: "
                            f"{error}") from None
    if header is None:
        raise MetadataError(f"cannot read metadata CSV {path}: the file is empty")
    return header, records


def _columns(path: Path, header: list[str],
             warnings: list[str]) -> tuple[dict[str, int], list[int]]:
    """(field -> column index, extra column indices); raises when there is no key column."""
    original = [name.strip() for name in header]
    normal = [_normal_header(name) for name in header]
    for position, name in enumerate(normal):
        if name and normal.index(name) != position:
            raise MetadataError(f"cannot read metadata CSV {path}: column "
                                f"'{original[position]}' appears twice")
    key = _pick(normal, KEY_COLUMNS)
    if key is None:
        raise MetadataError(f"metadata CSV {path} has no image column: expected one of "
                            f"{', '.join(KEY_COLUMNS)}; found: {', '.join(original)}")
    fields = {"key": key}
    for name, aliases in FIELD_COLUMNS.items():
        index = _pick(normal, aliases)
        if index is not None:
            fields[name] = index
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
          extra: dict[str, int]) -> tuple[list[PatientRow], dict[str, int], int]:
    """(first row of each key, rows per normalised key, rows without a key)."""
    rows: list[PatientRow] = []
    counts: dict[str, int] = {}
    blank_keys = 0
    for line, cells in records:
        value = {name: cells[index].strip() or None for name, index in fields.items()}
        key = value["key"]
        if key is None:
            blank_keys += 1
            continue
        normal = _normal_key(key)
        counts[normal] = counts.get(normal, 0) + 1
        if counts[normal] == 1:
            rows.append(PatientRow(
                key=key, patient_id=value.get("patient_id"), age=value.get("age"),
                sex=value.get("sex"), site=value.get("site"), line=line,
                extra={name: cells[index].strip() for name, index in extra.items()}))
    return rows, counts, blank_keys


def read_patients(path: Path, *, images: Iterable[str] | None = None) -> PatientTable:
    """Read a patient metadata CSV.

    Headers are matched case-insensitively (spaces and hyphens count as '_'); the file may be
    UTF-8 (with or without BOM), UTF-16 with BOM, or Windows-1252/Latin-1 (with a warning);
    comma, semicolon or tab separated. Every cell stays text, so '0012' stays '0012'.

    Args:
        path: The CSV file.
        images: The relative paths of all images to be screened. Give them so that a key
            fitting several images (one stem in two sub-folders) is reported as ambiguous
            instead of being used for each of them.

    Returns:
        The table; the first row of each key wins, later duplicates only count.

    Raises:
        MetadataError: The file is missing, unreadable, not a CSV, empty, or has no key column.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MetadataError(f"metadata file not found: {path}") from None
    except IsADirectoryError:
        raise MetadataError(f"cannot read metadata CSV {path}: it is a folder") from None
    except OSError as error:
        raise MetadataError(f"cannot read metadata CSV {path}: {error.strerror}") from None
    warnings: list[str] = []
    header, records = _records(path, _decode(path, data, warnings))
    fields, extra = _columns(path, header, warnings)
    names = [name.strip() for name in header]
    rows, counts, blank_keys = _rows(records, fields, {names[i]: i for i in extra})
    if blank_keys:
        warnings.append(f"{blank_keys} metadata row{'s' if blank_keys > 1 else ''} with an "
                        f"empty {names[fields['key']]} cell skipped")
    columns_found = {name: names[index] for name, index in fields.items()}
    return PatientTable(path, rows, counts, columns_found, [names[i] for i in extra],
                        warnings, images)
