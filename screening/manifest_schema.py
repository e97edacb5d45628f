"""Total validation of a manifest's JSON before any of it is used, one rule per field.

Every field a bundle's results depend on is type- and range-checked up front, so a bad
manifest stops the run with one line naming the field (exit 3) instead of a traceback or,
worse, a plausible-looking result: a string ``"false"`` where a boolean belongs is not
``True``, a NaN temperature is not a temperature, a shape is a list of integers.

``FIELDS`` is the table of top-level fields: each maps to a :class:`FieldRule` (a check and
whether the field is required). A new optional field is one entry, e.g.::

    FIELDS["model_card"] = FieldRule(check_model_card)

where the check takes ``(value, path)`` and raises :class:`FieldProblem` (helpers below:
``expect_int``, ``expect_number``, ``expect_text``, ...). ``CROSS_CHECKS`` are checks between
fields, run once every field passed its own. Unknown top-level fields are tolerated (a newer
training version may add some), but they are still part of the bundle's identity
(``screening.manifest.Manifest.digest``); a bundle names the fields it cannot be screened
without in ``requires``, and one this version does not know is refused, not ignored.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Callable

from .errors import BundleError
from .metadata import cell_text

SCHEMA_VERSION = 1
# A manifest is a few kB (the starter's 8 kB with its training provenance); anything near this
# is not a manifest, and reading it whole would let a file exhaust memory.
MAX_MANIFEST_BYTES = 4 * 2**20
MAX_DEPTH = 32  # nesting of JSON objects/arrays; the starter's is 6
MAX_CLASSES = 1000
MAX_SIDE = 8192  # pixels per side of the model input
MAX_DIM = 1_000_000  # any one ONNX dimension
MAX_TEMPERATURE = 1000.0
MAX_NORMALISATION = 1000.0  # |mean| and std, on 0..1 pixels
MAX_TEXT = 10_000
MASK_INPUT_MODES = ("binary", "masked_image")
BATCH_AXIS = "N"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}")
_CLASS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class FieldProblem(ValueError):
    """A manifest field that fails its rule; ``str()`` is the one line the CLI prints."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"manifest field {path}: {problem}")
        self.path = path


@dataclass(frozen=True)
class FieldRule:
    """How one top-level field is checked."""

    check: Callable[[Any, str], None]  # (value, path) -> None, raises FieldProblem
    required: bool = False


# -- value helpers (each raises FieldProblem naming the path) -------------------------------------

def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, allow_nan=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a text", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def expect_int(value: Any, path: str, low: int, high: int) -> int:
    """An integer (not a boolean, not 3.0) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldProblem(path, f"must be an integer, got {_kind(value)} {_shown(value)}")
    if not low <= value <= high:
        raise FieldProblem(path, f"must lie between {low} and {high}, got {value}")
    return value


def expect_number(value: Any, path: str, low: float, high: float, *, low_open: bool = False,
                  high_open: bool = False) -> float:
    """A finite number (not a boolean, not a string) in the range; open ends excluded."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldProblem(path, f"must be a number, got {_kind(value)} {_shown(value)}")
    if not math.isfinite(value):
        raise FieldProblem(path, f"must be a finite number, got {value}")
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise FieldProblem(path, f"must lie in {lo}{low:g}, {high:g}{hi}, got {value:g}")
    return float(value)


def expect_bool(value: Any, path: str) -> bool:
    """A JSON boolean: the text "false" is not false."""
    if not isinstance(value, bool):
        raise FieldProblem(path, f"must be true or false, got {_kind(value)} {_shown(value)}")
    return value


def expect_text(value: Any, path: str, *, pattern: re.Pattern | None = None, max_len: int = MAX_TEXT,
                empty: bool = False) -> str:
    """A string without control characters (one line), matching ``pattern`` when given."""
    if not isinstance(value, str):
        raise FieldProblem(path, f"must be a text, got {_kind(value)} {_shown(value)}")
    if not empty and not value.strip():
        raise FieldProblem(path, "must not be empty")
    if len(value) > max_len:
        raise FieldProblem(path, f"is {len(value)} characters long, more than {max_len}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise FieldProblem(path, "must not contain control characters (line breaks, tabs, NUL)")
    if pattern is not None and not pattern.fullmatch(value):
        raise FieldProblem(path, f"{_shown(value)} is not allowed here (letters, digits and . _ - only)")
    return value


def expect_list(value: Any, path: str, low: int, high: int) -> list:
    if not isinstance(value, list):
        raise FieldProblem(path, f"must be a list, got {_kind(value)} {_shown(value)}")
    if not low <= len(value) <= high:
        raise FieldProblem(path, f"must have {low} to {high} entries, got {len(value)}")
    return value


def expect_object(value: Any, path: str, *, keys: tuple[str, ...] = (), optional: tuple[str, ...] = (),
                  strict: bool = True) -> dict:
    """An object with the ``keys`` present; with ``strict`` no keys beyond ``keys + optional``."""
    if not isinstance(value, dict):
        raise FieldProblem(path, f"must be an object, got {_kind(value)} {_shown(value)}")
    missing = [key for key in keys if key not in value]
    if missing:
        raise FieldProblem(f"{path}.{missing[0]}", "is missing")
    if strict:
        unknown = [key for key in value if key not in keys and key not in optional]
        if unknown:
            raise FieldProblem(f"{path}.{unknown[0]}", "is not a known field here")
    return value


def expect_unique(values: list, path: str) -> None:
    seen = set()
    for i, value in enumerate(values):
        if value in seen:
            raise FieldProblem(f"{path}[{i}]", f"{_shown(value)} appears twice")
        seen.add(value)


# -- the fields --------------------------------------------------------------------------------

def check_schema_version(value: Any, path: str) -> None:
    if isinstance(value, bool) or value != SCHEMA_VERSION:
        raise FieldProblem(path, f"manifest schema version {_shown(value)} is not supported "
                                 f"(this screening version reads {SCHEMA_VERSION})")


def normal_diagnosis(text: str) -> str:
    """How a labels file's diagnosis, and a class's code or label, are compared (any case, runs of
    spaces and underscores as one space): ' Basal_Cell  Carcinoma ' -> 'basal cell carcinoma'.
    Here, below the manifest, so that the manifest's check and the labels reader share it."""
    return re.sub(r"[\s_]+", " ", text.strip()).casefold()


def check_classes(value: Any, path: str) -> None:
    expect_list(value, path, 1, MAX_CLASSES)
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        expect_object(item, where, keys=("name", "label", "malignant"))
        expect_text(item["name"], f"{where}.name", pattern=_CLASS_NAME)
        expect_text(item["label"], f"{where}.label", max_len=200)
        expect_bool(item["malignant"], f"{where}.malignant")
    expect_unique([item["name"] for item in value], f"{path}[].name")
    # A labels file (screening.validation.labels) names a class by its code or its label, read by
    # normal_diagnosis: two classes that read alike there would take each other's cases in
    # `screen evaluate` and `calibrate`, without a word.
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        for key in ("name", "label"):
            first = seen.setdefault(normal_diagnosis(item[key]), i)
            if first != i:
                raise FieldProblem(f"{path}[{i}].{key}", f"{_shown(item[key])} reads as class "
                                                         f"{value[first]['name']!r} in a labels file (case, "
                                                         f"spaces and _ aside)")
    if not any(item["malignant"] for item in value):
        raise FieldProblem(path, "no class is marked malignant, so no risk can be computed")


def check_input_size(value: Any, path: str) -> None:
    expect_list(value, path, 2, 2)
    for i, side in enumerate(value):
        expect_int(side, f"{path}[{i}]", 1, MAX_SIDE)


# A patients CSV's sex and site are matched as read (metadata.cell_text): a vocabulary entry in
# another form would leave that value unknown on every patient, with only a warning per row.
_UNREADABLE = "can never match a patients CSV value (read lower-case, '_' as a space)"


def check_metadata(value: Any, path: str) -> None:
    expect_object(value, path, keys=("age_edges", "sex_values", "site_groups", "site_aliases"),
                  optional=("age_bins", "unknown", "dim"))
    edges = expect_list(value["age_edges"], f"{path}.age_edges", 1, 64)
    for i, edge in enumerate(edges):
        expect_int(edge, f"{path}.age_edges[{i}]", 1, 150)
        if i and edge <= edges[i - 1]:
            raise FieldProblem(f"{path}.age_edges[{i}]", f"must be larger than the edge before ({edges[i - 1]})")
    for key in ("sex_values", "site_groups"):
        items = expect_list(value[key], f"{path}.{key}", 1, 64)
        for i, item in enumerate(items):
            expect_text(item, f"{path}.{key}[{i}]", max_len=64)
        expect_unique(items, f"{path}.{key}")
    for i, sex in enumerate(value["sex_values"]):
        if cell_text(sex) != sex:
            raise FieldProblem(f"{path}.sex_values[{i}]", f"{_shown(sex)} {_UNREADABLE}: write {cell_text(sex)!r}")
    aliases = expect_object(value["site_aliases"], f"{path}.site_aliases", strict=False)
    if len(aliases) > 10_000:
        raise FieldProblem(f"{path}.site_aliases", f"has {len(aliases)} entries, more than 10000")
    for raw, group in aliases.items():
        expect_text(group, f"{path}.site_aliases[{raw!r}]", max_len=64)
        if group not in value["site_groups"]:
            raise FieldProblem(f"{path}.site_aliases[{raw!r}]", f"{group!r} is not one of site_groups")
        if cell_text(raw) != raw:
            raise FieldProblem(f"{path}.site_aliases[{raw!r}]", f"{_UNREADABLE}: write {cell_text(raw)!r}")
    if "unknown" in value and value["unknown"] != "unknown":
        raise FieldProblem(f"{path}.unknown", f"must be 'unknown', got {_shown(value['unknown'])}")
    if "dim" in value:
        dim = len(edges) + 2 + len(value["sex_values"]) + 1 + len(value["site_groups"]) + 1
        if expect_int(value["dim"], f"{path}.dim", 1, 100_000) != dim:
            raise FieldProblem(f"{path}.dim", f"says {value['dim']} but the fields encode {dim} values")
    if "age_bins" in value:
        bins = expect_list(value["age_bins"], f"{path}.age_bins", 1, 100)
        if len(bins) != len(edges) + 2:
            raise FieldProblem(f"{path}.age_bins", f"has {len(bins)} labels for {len(edges) + 2} bins")


def check_shape(value: Any, path: str) -> None:
    """[N, 3, 160, 160]: positive integers, the batch axis "N" first (or a fixed batch)."""
    expect_list(value, path, 1, 8)
    for i, dim in enumerate(value):
        if i == 0 and dim == BATCH_AXIS:
            continue
        if isinstance(dim, str):
            raise FieldProblem(f"{path}[{i}]", f"must be a positive integer"
                                               f"{' or ' + repr(BATCH_AXIS) if i == 0 else ''}, got {dim!r}")
        expect_int(dim, f"{path}[{i}]", 1, MAX_DIM)


def check_model_file(value: Any, path: str) -> None:
    """A plain relative path inside the bundle folder: no absolute path, no '..', no backslash."""
    expect_text(value, path, max_len=255)
    pure = PurePosixPath(value)
    if pure.is_absolute() or "\\" in value or ".." in pure.parts or re.match(r"[A-Za-z]:", value):
        raise FieldProblem(path, f"{value!r} must be a file name inside the bundle folder")


def check_model(value: Any, path: str) -> None:
    expect_object(value, path, keys=("file", "sha256", "inputs", "outputs", "mean", "std"),
                  optional=("architecture",))
    check_model_file(value["file"], f"{path}.file")
    if not isinstance(value["sha256"], str) or not _SHA256.fullmatch(value["sha256"]):
        raise FieldProblem(f"{path}.sha256", f"must be 64 lower-case hex digits, got {_shown(value['sha256'])}")
    for key in ("inputs", "outputs"):
        io = expect_object(value[key], f"{path}.{key}", strict=False)
        if not 1 <= len(io) <= 16:
            raise FieldProblem(f"{path}.{key}", f"must name 1 to 16 tensors, got {len(io)}")
        for name, shape in io.items():
            expect_text(name, f"{path}.{key}", pattern=_NAME)
            check_shape(shape, f"{path}.{key}.{name}")
    for key, low, low_open in (("mean", -MAX_NORMALISATION, False), ("std", 0.0, True)):
        values = expect_list(value[key], f"{path}.{key}", 3, 3)
        for i, number in enumerate(values):
            expect_number(number, f"{path}.{key}[{i}]", low, MAX_NORMALISATION, low_open=low_open)
    if "architecture" in value:
        expect_text(value["architecture"], f"{path}.architecture", max_len=1000, empty=True)


def _text_field(pattern: re.Pattern | None = None, max_len: int = MAX_TEXT, empty: bool = False):
    return lambda value, path: expect_text(value, path, pattern=pattern, max_len=max_len, empty=empty)


def _object_field(value: Any, path: str) -> None:
    expect_object(value, path, strict=False)


def _list_of_objects(value: Any, path: str) -> None:
    for i, item in enumerate(expect_list(value, path, 0, 1000)):
        expect_object(item, f"{path}[{i}]", strict=False)


def _list_of_texts(value: Any, path: str) -> None:
    for i, item in enumerate(expect_list(value, path, 0, 1000)):
        expect_text(item, f"{path}[{i}]", max_len=200)


def _optional_text(value: Any, path: str) -> None:
    if value is not None:
        expect_text(value, path, max_len=200)


# Top-level fields. The fields other modules own (operating points, preprocessing, tta,
# attention queries, card, derived) are type-checked here; their own modules check their
# meaning in Manifest.check().
FIELDS: dict[str, FieldRule] = {
    "schema_version": FieldRule(check_schema_version, required=True),
    "name": FieldRule(_text_field(_NAME), required=True),
    "version": FieldRule(_text_field(_VERSION), required=True),
    "created": FieldRule(_text_field(max_len=64), required=True),
    "statement": FieldRule(_text_field(max_len=MAX_TEXT)),
    "classes": FieldRule(check_classes, required=True),
    "input_size": FieldRule(check_input_size, required=True),
    "mask_threshold": FieldRule(lambda v, p: expect_number(v, p, 0.0, 1.0, low_open=True, high_open=True),
                                required=True),
    "mask_input_mode": FieldRule(lambda v, p: _one_of(v, p, MASK_INPUT_MODES), required=True),
    "temperature": FieldRule(lambda v, p: expect_number(v, p, 0.0, MAX_TEMPERATURE, low_open=True),
                             required=True),
    "metadata": FieldRule(check_metadata, required=True),
    "segmenter": FieldRule(check_model, required=True),
    "classifier": FieldRule(check_model, required=True),
    "training": FieldRule(_object_field),
    "operating_points": FieldRule(_list_of_objects),
    "default_operating_point": FieldRule(_optional_text),
    "preprocessing": FieldRule(_list_of_objects),
    "tta": FieldRule(_text_field(max_len=64)),
    "attention_queries": FieldRule(_list_of_texts),
    "card": FieldRule(_object_field),
    "derived": FieldRule(_object_field),
    "requires": FieldRule(_list_of_texts),
}


def _one_of(value: Any, path: str, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise FieldProblem(path, f"must be one of {', '.join(choices)}, got {_shown(value)}")


# -- checks between fields -----------------------------------------------------------------------

# role -> (required inputs, required outputs, optional outputs)
MODEL_IO: dict[str, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {
    "segmenter": (frozenset({"image"}), frozenset({"mask"}), frozenset()),
    "classifier": (frozenset({"image", "mask", "meta"}), frozenset({"logits"}), frozenset({"attention"})),
}


def check_model_io(data: dict) -> None:
    for role, (inputs, outputs, optional) in MODEL_IO.items():
        spec = data[role]
        if set(spec["inputs"]) != inputs:
            raise FieldProblem(f"{role}.inputs", f"must be {', '.join(sorted(inputs))}, got "
                                                 f"{', '.join(sorted(spec['inputs']))}")
        if not outputs <= set(spec["outputs"]) <= outputs | optional:
            raise FieldProblem(f"{role}.outputs", f"must be {', '.join(sorted(outputs))}"
                                                  f"{' (optionally ' + ', '.join(sorted(optional)) + ')' if optional else ''}"
                                                  f", got {', '.join(sorted(spec['outputs']))}")


def check_shapes_agree(data: dict) -> None:
    """Image and mask tensors at input_size, 3 and 1 channels; meta and logits widths."""
    height, width = data["input_size"]
    for role, name, channels in (("segmenter", "image", 3), ("classifier", "image", 3),
                                 ("classifier", "mask", 1), ("segmenter", "mask", 1)):
        io = "outputs" if (role, name) == ("segmenter", "mask") else "inputs"
        shape = data[role][io][name]
        if len(shape) != 4 or shape[1:] != [channels, height, width]:
            raise FieldProblem(f"{role}.{io}.{name}", f"must be [N, {channels}, {height}, {width}] "
                                                      f"(input_size), got {shape}")
    meta = data["classifier"]["inputs"]["meta"]
    metadata = data["metadata"]
    dim = (len(metadata["age_edges"]) + 2 + len(metadata["sex_values"]) + 1
           + len(metadata["site_groups"]) + 1)
    if len(meta) != 2 or meta[1] != dim:
        raise FieldProblem("classifier.inputs.meta", f"must be [N, {dim}] (the metadata vocabulary "
                                                     f"encodes {dim} values), got {meta}")
    logits = data["classifier"]["outputs"]["logits"]
    if len(logits) != 2 or logits[1] != len(data["classes"]):
        raise FieldProblem("classifier.outputs.logits", f"must be [N, {len(data['classes'])}] "
                                                        f"(one per class), got {logits}")


def check_requires(data: dict) -> None:
    """A bundle lists the fields it cannot be screened without; one this version does not know
    would be ignored (unknown fields are tolerated), so the bundle is refused instead of screened
    without it."""
    unknown = [name for name in data.get("requires", []) if name not in FIELDS]
    if unknown:
        raise FieldProblem("requires", f"names {', '.join(unknown)}, which this version of screen does not know: "
                                       f"the bundle needs a newer screen (pip install --upgrade lesion-screening)")


CROSS_CHECKS: list[Callable[[dict], None]] = [check_requires, check_model_io, check_shapes_agree]


# -- whole documents ---------------------------------------------------------------------------

def depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion (a hostile file cannot overflow it)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


def parse_manifest_json(data: bytes, where: str) -> dict:
    """Bytes of a manifest file -> its object; BundleError naming the problem.

    Refuses files over ``MAX_MANIFEST_BYTES`` (callers read at most one byte more), nesting
    deeper than ``MAX_DEPTH``, and an object that repeats a key (which value would count?).
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{where} is larger than {MAX_MANIFEST_BYTES // 2**20} MiB: not a manifest")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
        found: dict = {}
        for key, value in pairs:
            if key in found:
                raise BundleError(f"{where}: key {key!r} appears twice in one object")
            found[key] = value
        return found

    try:
        parsed = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates)
    except UnicodeDecodeError as exc:
        raise BundleError(f"cannot read {where}: not UTF-8 text ({exc.reason})") from None
    except RecursionError:
        raise BundleError(f"cannot read {where}: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"cannot read {where}: {exc}") from None
    if not isinstance(parsed, dict):
        raise BundleError(f"{where} is not a JSON object")
    if depth(parsed) > MAX_DEPTH:
        raise BundleError(f"cannot read {where}: nested deeper than {MAX_DEPTH} levels")
    return parsed


def validate_manifest_data(data: Any) -> None:
    """Check every known field of a parsed manifest, then the fields against each other.

    Raises:
        BundleError: one line, ``manifest field <path>: <problem>``, for the first problem.
    """
    if not isinstance(data, dict):
        raise BundleError(f"manifest must be a JSON object, got {_kind(data)}")
    try:
        if "schema_version" in data:  # first: a future manifest may differ in everything else
            check_schema_version(data["schema_version"], "schema_version")
        for name, rule in FIELDS.items():
            if name in data:
                rule.check(data[name], name)
            elif rule.required:
                raise FieldProblem(name, "is missing")
        for check in CROSS_CHECKS:
            check(data)
    except FieldProblem as problem:
        raise BundleError(str(problem)) from None
