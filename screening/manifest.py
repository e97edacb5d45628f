"""The model bundle manifest: the one contract between training and screening.

A bundle is a folder ``engines/<name>/`` holding ``segmenter.onnx``, ``classifier.onnx`` and
``manifest.json``. The manifest is the only source, at run time, of the classes, the
preprocessing, the mask handling, the metadata vocabulary and the ONNX input/output names.
Training writes it (``training.export``); screening reads and verifies it here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, TypeVar

from .attention import ATTENTION_OUTPUT
from .attention import problems as attention_problems
from .errors import BundleError, InputError
from .manifest_schema import FIELDS, MAX_MANIFEST_BYTES, parse_manifest_json, validate_manifest_data
from .metadata import MetadataVocabulary
from .operating_points import default_point_name, find_point
from .operating_points import problems as operating_point_problems
from .preprocess import preprocessing_problems
from .stalled_reads import DEFAULT_STALL_S, read_pieces, stalled_line, while_progressing
from .tta import TTA_MODES

SCHEMA_VERSION = 1
T = TypeVar("T")
MANIFEST_NAME = "manifest.json"
NOT_FOR_DIAGNOSIS = (
    "Research and triage support only. Not a medical device and not for diagnosis: every "
    "result must be reviewed by a qualified clinician."
)
MASK_INPUT_MODES = ("binary", "masked_image")


@dataclass(frozen=True)
class ClassSpec:
    """One output class of the classifier."""

    name: str  # short code used in column names, e.g. "mel" -> p_mel
    label: str  # human-readable name, e.g. "melanoma"
    malignant: bool  # counts towards the risk score


@dataclass(frozen=True)
class ModelSpec:
    """One ONNX model of the bundle and how to feed it."""

    file: str  # file name inside the bundle folder
    sha256: str  # of the file; checked before use
    inputs: dict[str, list[Any]]  # input name -> shape, batch axis as "N"
    outputs: dict[str, list[Any]]  # output name -> shape, batch axis as "N"
    mean: list[float]  # per-channel RGB normalisation of the image input, on 0..1 pixels
    std: list[float]
    architecture: str = ""  # free text for humans, e.g. "smp Unet tu-tf_efficientnet_lite0"


@dataclass(frozen=True)
class Manifest:
    """Everything the runtime needs to know about a bundle."""

    name: str
    version: str
    created: str  # ISO 8601 UTC
    classes: list[ClassSpec]
    input_size: tuple[int, int]  # (height, width) of every model input
    segmenter: ModelSpec  # input "image" -> output "mask" (lesion probability, N x 1 x H x W)
    classifier: ModelSpec  # inputs "image", "mask", "meta" -> output "logits" (N x classes)
    metadata: MetadataVocabulary
    mask_threshold: float = 0.5  # probability above which a pixel is lesion
    mask_input_mode: str = "binary"  # what the classifier's mask branch sees (applied in-graph)
    temperature: float = 1.0  # calibration: probabilities = softmax(logits / temperature)
    training: dict[str, Any] = field(default_factory=dict)  # provenance: data, config, metrics, commit
    # Risk thresholds at fixed malignant sensitivity (screening.operating_points); older bundles
    # have none, and their results carry an empty flag.
    operating_points: list[dict[str, Any]] = field(default_factory=list)
    default_operating_point: str | None = None  # name; None = the highest target sensitivity
    # Model card for people (screening.card): intended use, data sources and licences, population,
    # class definitions, limitations, changelog, package versions; {} in older bundles.
    card: dict[str, Any] = field(default_factory=dict)
    # How this bundle was made from another without retraining (`screen calibrate`): the parent's
    # name@version and temperature, the local data, and the figures before and after; {} otherwise.
    derived: dict[str, Any] = field(default_factory=dict)
    # Steps on the uint8 RGB input before normalisation, for both models, in order
    # (screening.preprocess.apply_preprocessing), e.g. [{"name": "shades_of_gray", "power": 6}].
    preprocessing: list[dict[str, Any]] = field(default_factory=list)
    tta: str = "none"  # default test-time augmentation (screening.tta); --tta overrides it
    # Queries of the classifier's optional "attention" output (screening.attention), in its
    # order, e.g. ["meta", "mask"]; [] when the classifier has no such output.
    attention_queries: list[str] = field(default_factory=list)
    statement: str = NOT_FOR_DIAGNOSIS
    schema_version: int = SCHEMA_VERSION
    # Fields that change results and must not be ignored by a runtime that does not know them
    # (an unknown field is tolerated): such a runtime refuses the bundle (manifest_schema).
    requires: list[str] = field(default_factory=list)
    # Top-level fields this version does not know, tolerated so that a newer training version's
    # bundle still loads: unused, but part of the bundle's identity (``digest``).
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # The manifest as read from its file, and ``to_dict()`` right after reading it: the digest is
    # of what the file says (plus any change made since), not of this version's rendering of it.
    source: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    as_loaded: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    # The folder ``load_manifest`` read it from (None when built in code): where to look for a
    # derived bundle's parent (screening.validation.temperature). Not part of the identity.
    folder: Path | None = field(default=None, compare=False, repr=False)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def malignant_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.classes) if c.malignant]

    @property
    def tag(self) -> str:
        """``name@version``, as people name the bundle."""
        return f"{self.name}@{self.version}"

    @cached_property
    def digest(self) -> str:
        """sha256 of the canonical manifest: every field, known or not, in sorted-key compact JSON.

        Every field can change results (classes, malignant flags, temperature, normalisation,
        thresholds, vocabulary, operating points), so an edited manifest is another bundle
        even when it keeps its name, version and ONNX files. For a manifest read from a file it
        is the file's content with any field changed since (``--tta``, a recalibration) put
        over it, so that a newer runtime, which fills in defaults for fields an older bundle
        does not have, gives the same bundle the same identity (no full rescreen, no refused
        evaluation after a tool upgrade).
        """
        return canonical_digest(self.file_content())

    def file_content(self) -> dict[str, Any]:
        """What the manifest file says: as read, with any field changed since put over it; for a
        manifest built in code, every field (unknown ones last). ``save_manifest`` writes this,
        so a saved manifest reads back with the same identity."""
        current = self.to_dict()
        if self.source is None or self.as_loaded is None:  # built in code, not read from a file
            return {**current, **{key: value for key, value in self.extra.items() if key not in current}}
        changed = {key: value for key, value in current.items() if self.as_loaded.get(key) != value}
        return {**self.source, **changed}

    @property
    def legacy_identity(self) -> str:
        """The identity screen gave this bundle before it was taken from the file's content (every
        field rendered, defaults filled in): results written then still name it so."""
        rendered = {**self.extra, **self.to_dict()}
        if not rendered.get("requires"):  # that screen had no `requires` field
            rendered.pop("requires", None)
        return f"{self.tag}+{canonical_digest(rendered)[:8]}"

    @property
    def identity(self) -> str:
        """``name@version+<first 8 hex of digest>``, written on every output row and journal line."""
        return f"{self.tag}+{self.digest[:8]}"

    def operating_point(self, name: str | None = None) -> dict[str, Any] | None:
        """The operating point called ``name``, else the bundle's default; None if it has none.

        Raises:
            InputError: ``name`` is not one of the bundle's points (the message lists them).
        """
        points = self.operating_points or []
        if name is not None:
            return find_point(points, name)
        default = self.default_operating_point or default_point_name(points)
        return None if default is None else find_point(points, default)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metadata"] = self.metadata.to_dict()
        data["input_size"] = list(self.input_size)
        # Keys in reading order for humans opening the file.
        order = ["schema_version", "name", "version", "created", "statement", "classes",
                 "input_size", "mask_threshold", "mask_input_mode", "temperature", "metadata",
                 "operating_points", "default_operating_point", "preprocessing", "tta", "requires", "segmenter",
                 "classifier", "attention_queries", "training"]
        out = {k: data[k] for k in order}
        # For people, not the runtime: last, after the training provenance.
        out.update(card=data["card"], derived=data["derived"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        validate_manifest_data(data)  # every field's type and range, one line naming the field
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BundleError(f"manifest schema version {version!r} is not supported "
                              f"(this screening version reads {SCHEMA_VERSION})")
        try:
            manifest = cls(
                name=str(data["name"]),
                version=str(data["version"]),
                created=str(data["created"]),
                classes=[ClassSpec(**c) for c in data["classes"]],
                input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
                segmenter=ModelSpec(**data["segmenter"]),
                classifier=ModelSpec(**data["classifier"]),
                metadata=MetadataVocabulary.from_dict(data["metadata"]),
                mask_threshold=float(data["mask_threshold"]),
                mask_input_mode=str(data["mask_input_mode"]),
                temperature=float(data["temperature"]),
                training=dict(data.get("training", {})),
                card=dict(data.get("card") or {}),
                derived=dict(data.get("derived") or {}),
                operating_points=data.get("operating_points", []),
                default_operating_point=data.get("default_operating_point"),
                preprocessing=[dict(step) for step in data.get("preprocessing", [])],
                tta=str(data.get("tta", "none")),
                attention_queries=data.get("attention_queries", []),
                statement=str(data.get("statement", NOT_FOR_DIAGNOSIS)),
                requires=[str(name) for name in data.get("requires", [])],
                extra={key: value for key, value in data.items() if key not in FIELDS},
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BundleError(f"manifest is malformed: {exc.__class__.__name__}: {exc}") from exc
        manifest.check()
        return replace(manifest, source=data, as_loaded=manifest.to_dict())

    def check(self) -> None:
        """Internal consistency; raises BundleError with the first problem found."""
        if not self.classes:
            raise BundleError("manifest lists no classes")
        if not self.malignant_indices:
            raise BundleError("manifest marks no class as malignant, so no risk can be computed")
        if self.mask_input_mode not in MASK_INPUT_MODES:
            raise BundleError(f"mask_input_mode {self.mask_input_mode!r} is not one of {MASK_INPUT_MODES}")
        if not 0.0 < self.mask_threshold < 1.0:
            raise BundleError(f"mask_threshold {self.mask_threshold} must lie strictly between 0 and 1")
        if self.temperature <= 0:
            raise BundleError(f"temperature {self.temperature} must be positive")
        for problem in preprocessing_problems(self.preprocessing):
            raise BundleError(problem)
        if self.tta not in TTA_MODES:
            raise BundleError(f"tta {self.tta!r} is not one of {', '.join(TTA_MODES)}")
        point_problems = operating_point_problems(self.operating_points, self.default_operating_point)
        if point_problems:
            raise BundleError("; ".join(point_problems))
        # The attention output is optional: bundles without it screen the same, with no maps.
        optional = {ATTENTION_OUTPUT} & set(self.classifier.outputs)
        for role, spec, inputs, outputs in (
            ("segmenter", self.segmenter, {"image"}, {"mask"}),
            ("classifier", self.classifier, {"image", "mask", "meta"}, {"logits", *optional}),
        ):
            if set(spec.inputs) != inputs or set(spec.outputs) != outputs:
                raise BundleError(f"{role} must have inputs {sorted(inputs)} and outputs {sorted(outputs)}, "
                                  f"manifest says {sorted(spec.inputs)} -> {sorted(spec.outputs)}")
        if self.classifier.inputs["meta"][1] != self.metadata.dim:
            raise BundleError(f"classifier meta input has width {self.classifier.inputs['meta'][1]} "
                              f"but the metadata vocabulary encodes {self.metadata.dim} values")
        if self.classifier.outputs["logits"][1] != len(self.classes):
            raise BundleError(f"classifier gives {self.classifier.outputs['logits'][1]} logits "
                              f"for {len(self.classes)} classes")
        for problem in attention_problems(self.attention_queries, self.classifier.outputs):
            raise BundleError(problem)

    @property
    def has_attention(self) -> bool:
        """Whether the classifier also gives the attention maps of its queries (explanations)."""
        return ATTENTION_OUTPUT in self.classifier.outputs


def fields_required(manifest: Manifest) -> list[str]:
    """The fields of ``manifest`` that change results at their current value, for ``requires``.

    A new field that changes results belongs here (when not at its default), so that an older
    runtime refuses the bundle rather than screening it without the field.
    """
    return [name for name, used in (("preprocessing", bool(manifest.preprocessing)),
                                    ("tta", manifest.tta != "none")) if used]


def canonical_digest(data: dict[str, Any]) -> str:
    """sha256 hex of JSON with sorted keys and no whitespace: the same content, the same digest."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path, beat: Callable[[], None] = lambda: None) -> str:
    """sha256 hex of a file's content; ``beat()`` after each piece read (see :func:`load_manifest`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            beat()
    return digest.hexdigest()


def save_manifest(manifest: Manifest, bundle_dir: Path) -> Path:
    path = Path(bundle_dir) / MANIFEST_NAME
    # Fields this version does not know are kept: a derived bundle must not lose what a newer
    # runtime would read in its parent.
    path.write_text(json.dumps(manifest.file_content(), indent=2) + "\n", encoding="utf-8")
    return path


def load_manifest(bundle_dir: Path, verify_files: bool = True, stall_s: float = DEFAULT_STALL_S) -> Manifest:
    """Read and check a bundle's manifest; with ``verify_files`` also the ONNX files' sha256.

    The bundle may sit on a network share: it is read in a watched thread
    (:func:`screening.stalled_reads.while_progressing`) that gives up once nothing has come for
    ``stall_s`` seconds (``--decode-timeout``), however long hashing large models takes in all.

    Raises:
        BundleError: the bundle is missing, malformed or does not match its manifest.
        InputError: the bundle's drive stopped answering while it was being read.
    """
    bundle_dir = Path(bundle_dir)
    return within_bundle_stall(bundle_dir, stall_s, lambda beat: _load_manifest(bundle_dir, verify_files, beat))


def bundle_stalled(bundle_dir: Path, stall_s: float) -> InputError:
    """The one line of a bundle whose drive stopped answering: not the bundle's fault (exit 2, not 3)."""
    return InputError(stalled_line(f"the model bundle {bundle_dir}", "it was being read", stall_s))


def within_bundle_stall(bundle_dir: Path, stall_s: float, work: Callable[[Callable[[], None]], T]) -> T:
    """``work(beat)`` on the bundle's drive, given up with the bundle's one line (InputError) once
    nothing came for ``stall_s`` seconds (:func:`screening.stalled_reads.while_progressing`): how
    every read of a bundle (manifest, models, TensorRT engines, a Ray worker's copy) is bounded."""
    return while_progressing(work, stall_s, lambda: bundle_stalled(Path(bundle_dir), stall_s))


def _load_manifest(bundle_dir: Path, verify_files: bool, beat: Callable[[], None]) -> Manifest:
    path = bundle_dir / MANIFEST_NAME
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle folder {bundle_dir} does not exist")
    if not path.is_file():
        raise BundleError(f"{path} not found: not a model bundle")
    beat()
    try:
        raw = read_pieces(path, beat, MAX_MANIFEST_BYTES + 1)  # never a huge file read whole
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    manifest = replace(Manifest.from_dict(parse_manifest_json(raw, str(path))), folder=bundle_dir)
    inside = bundle_dir.resolve()
    for role, spec in (("segmenter", manifest.segmenter), ("classifier", manifest.classifier)):
        # The schema refuses '..' and absolute paths; a symbolic link can still point out.
        if not (bundle_dir / spec.file).resolve().is_relative_to(inside):
            raise BundleError(f"manifest field {role}.file: {spec.file!r} leads outside the bundle "
                              f"folder {bundle_dir}")
        beat()
    if verify_files:
        for spec in (manifest.segmenter, manifest.classifier):
            model_path = bundle_dir / spec.file
            if not model_path.is_file():
                raise BundleError(f"{model_path} listed in the manifest is missing")
            try:
                actual = sha256_file(model_path, beat)
            except OSError as exc:  # the bundle's problem (exit 3), not the results' (exit 2)
                raise BundleError(f"cannot read {model_path}: {exc.strerror or exc}") from None
            if actual != spec.sha256:
                raise BundleError(f"{model_path} does not match its manifest sha256 "
                                  f"(expected {spec.sha256[:12]}…, found {actual[:12]}…): "
                                  f"the bundle was modified or is incomplete")
    return manifest
