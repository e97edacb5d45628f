"""Class configurations as data: which classes a classifier predicts and which diagnoses each takes.

A ``ClassConfig`` is an ordered list of classes; each class has a short name (the output
column ``p_<name>``), a human label, a ``malignant`` flag (the risk score sums the malignant
classes) and the canonical diagnosis codes (see ``diagnoses``) that it takes. A diagnosis in
no class is left out of training.

Built-ins:

- ``ham7``: the seven HAM10000 classes. ``akiec`` also takes ISIC 2019's ``scc``: HAM10000's
  akiec includes Bowen's disease (squamous cell carcinoma in situ), and ISIC 2019 labels 140
  of those very HAM10000 images SCC, so the two codes name one class in practice.
- ``paper5``: the source paper lists "melanocytic nevi, nevus, benign keratosis-like,
  melanoma, basal cell carcinoma". The first two are the same diagnosis (a melanocytic nevus)
  under two dataset spellings, and a classifier cannot learn a split between identical
  lesions, so they are merged: the configuration keeps the paper's name and has the four
  distinct classes nv, bkl, mel, bcc (malignant: mel, bcc).

A configuration file may define its own classes inline, as a list of
``{name, label, malignant, diagnoses}`` mappings or as ``{name: ..., classes: [...]}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screening.manifest import ClassSpec

from .diagnoses import CANONICAL_CODES, canonical_diagnosis
from .errors import DataError


@dataclass(frozen=True)
class ClassDef:
    """One class of a configuration."""

    name: str  # short code, e.g. "mel"; becomes the output column p_mel
    label: str  # human-readable, e.g. "melanoma"
    malignant: bool  # counts towards the risk score
    diagnoses: tuple[str, ...]  # canonical diagnosis codes this class takes

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "malignant": self.malignant,
                "diagnoses": list(self.diagnoses)}


@dataclass(frozen=True)
class ClassConfig:
    """An ordered set of classes; the order is the classifier's logit order."""

    name: str
    classes: tuple[ClassDef, ...]

    def __post_init__(self) -> None:
        _check(self)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def malignant_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.classes) if c.malignant]

    def class_of(self, diagnosis: str) -> str | None:
        """The name of the class that takes a canonical diagnosis code, or None."""
        for cls in self.classes:
            if diagnosis in cls.diagnoses:
                return cls.name
        return None

    def index_of(self, class_name: str) -> int:
        """The logit index of a class name."""
        try:
            return self.class_names.index(class_name)
        except ValueError:
            raise DataError(f"class {class_name!r} is not in {self.name} "
                            f"({', '.join(self.class_names)})") from None

    def to_manifest_classes(self) -> list[ClassSpec]:
        """The classes as the bundle manifest records them."""
        return [ClassSpec(name=c.name, label=c.label, malignant=c.malignant) for c in self.classes]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": [c.to_dict() for c in self.classes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | list[dict[str, Any]], name: str = "custom") -> "ClassConfig":
        """Build from ``{name, classes: [...]}`` or from the bare list of class mappings.

        Diagnoses may be given as codes or long names ("melanoma"); they are stored as codes.
        """
        if isinstance(data, dict):
            name = str(data.get("name", name))
            data = data.get("classes")
        if not isinstance(data, list) or not data:
            raise DataError(f"class configuration {name!r} must have a non-empty list of classes")
        return cls(name=name, classes=tuple(_class_def(item, name) for item in data))


def _class_def(item: Any, config: str) -> ClassDef:
    if not isinstance(item, dict) or "name" not in item:
        raise DataError(f"class configuration {config!r}: every class needs at least a name, got {item!r}")
    diagnoses = item.get("diagnoses", [item["name"]])
    if isinstance(diagnoses, str):
        diagnoses = [diagnoses]
    codes = []
    for raw in diagnoses:
        code = canonical_diagnosis(raw)
        if code is None:
            raise DataError(f"class configuration {config!r}, class {item['name']!r}: diagnosis "
                            f"{raw!r} is not one of {', '.join(CANONICAL_CODES)} or their long names")
        codes.append(code)
    return ClassDef(name=str(item["name"]), label=str(item.get("label", item["name"])),
                    malignant=bool(item.get("malignant", False)), diagnoses=tuple(codes))


def _check(config: ClassConfig) -> None:
    names = config.class_names
    if len(names) < 2:
        raise DataError(f"class configuration {config.name!r} needs at least two classes")
    if len(set(names)) != len(names):
        raise DataError(f"class configuration {config.name!r} repeats a class name: {', '.join(names)}")
    if not config.malignant_indices:
        raise DataError(f"class configuration {config.name!r} marks no class as malignant, "
                        f"so no risk score can be computed")
    owner: dict[str, str] = {}
    for cls in config.classes:
        for code in cls.diagnoses:
            if code not in CANONICAL_CODES:
                raise DataError(f"class configuration {config.name!r}, class {cls.name!r}: "
                                f"{code!r} is not a canonical diagnosis code")
            if code in owner:
                raise DataError(f"class configuration {config.name!r}: diagnosis {code!r} is in both "
                                f"{owner[code]!r} and {cls.name!r}")
            owner[code] = cls.name


def _classes(*rows: tuple[str, str, bool, tuple[str, ...]]) -> tuple[ClassDef, ...]:
    return tuple(ClassDef(*row) for row in rows)


BUILTIN_CLASS_CONFIGS = {
    "ham7": ClassConfig("ham7", _classes(
        ("nv", "melanocytic nevus", False, ("nv",)),
        ("mel", "melanoma", True, ("mel",)),
        ("bkl", "benign keratosis-like lesion", False, ("bkl",)),
        ("bcc", "basal cell carcinoma", True, ("bcc",)),
        ("akiec", "actinic keratosis / intraepithelial carcinoma", True, ("akiec", "scc")),
        ("vasc", "vascular lesion", False, ("vasc",)),
        ("df", "dermatofibroma", False, ("df",)),
    )),
    "paper5": ClassConfig("paper5", _classes(
        ("nv", "melanocytic nevus", False, ("nv",)),
        ("bkl", "benign keratosis-like lesion", False, ("bkl",)),
        ("mel", "melanoma", True, ("mel",)),
        ("bcc", "basal cell carcinoma", True, ("bcc",)),
    )),
}


def load_class_config(path: Path) -> ClassConfig:
    """Read a class configuration from a YAML file (a list of classes, or ``{name, classes}``)."""
    import yaml  # training extra; only needed for file-defined classes

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read class configuration {path}: {exc}") from exc
    return ClassConfig.from_dict(data, name=path.stem)


def get_class_config(spec: str | Path | list[dict[str, Any]] | dict[str, Any] | ClassConfig) -> ClassConfig:
    """Resolve a class configuration from a built-in name, a YAML path, inline data or itself.

    Raises:
        DataError: for an unknown name (the message lists the built-ins) or a malformed definition.
    """
    if isinstance(spec, ClassConfig):
        return spec
    if isinstance(spec, (list, dict)):
        return ClassConfig.from_dict(spec)
    text = str(spec)
    if text in BUILTIN_CLASS_CONFIGS:
        return BUILTIN_CLASS_CONFIGS[text]
    if text.endswith((".yaml", ".yml")):
        return load_class_config(Path(text))
    raise DataError(f"unknown class configuration {text!r}; use one of "
                    f"{', '.join(BUILTIN_CLASS_CONFIGS)} or a path to a .yaml file")
