"""Training configuration: dataclasses with defaults, filled from YAML, overridden from the CLI.

One YAML file describes a whole bundle (data, segmenter, classifier, export), so the commands
`python -m training segmenter|classifier|evaluate|export --config X.yaml` all agree on paths
and sizes. `--set classifier.optim.epochs=3` overrides any field; the resolved configuration
is saved next to every checkpoint.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .models.fusion import FusionConfig
from .models.segmenter import SegmenterConfig


@dataclass
class DataConfig:
    index: str = "runs/index.csv"  # index CSV written by `python -m training prepare`
    classes: Any = "ham7"  # built-in class configuration name, or an inline list of classes
    input_size: int = 224  # square model input, pixels (the paper's 224)
    workers: int = 2  # DataLoader worker processes
    # Steps applied to every model input after the resize, in training and screening alike, and
    # saved in the manifest, e.g. [{name: shades_of_gray, power: 6}] (screening/preprocess.py).
    preprocessing: list = field(default_factory=list)


@dataclass
class OptimConfig:
    epochs: int = 50  # paper default
    batch_size: int = 64  # paper default
    lr: float = 1e-3  # AdamW learning rate (paper default)
    backbone_lr: float | None = None  # learning rate for pretrained backbones; None = lr
    weight_decay: float = 1e-2
    # "plateau": ReduceLROnPlateau on the validation loss (paper). "cosine": every step, from
    # lr down to lr * min_lr_ratio at the last step; suits short fine-tuning runs whose
    # validation loss is too noisy for a plateau to trigger.
    schedule: str = "plateau"
    min_lr_ratio: float = 0.01
    plateau_patience: int = 3  # ReduceLROnPlateau patience (epochs) on the validation loss
    plateau_factor: float = 0.5
    freeze_epochs: int = 0  # epochs with frozen backbones before fine-tuning everything
    max_steps_per_epoch: int | None = None  # cap for quick runs; None = one pass over the data
    # Average the weights of the last N epochs into averaged.pt (0 = off). Epochs at the end of a
    # cosine schedule sit around one minimum; their mean usually generalises better than any one
    # of them (stochastic weight averaging). It replaces best.pt only if it validates better.
    average_last: int = 0


@dataclass
class SegmenterTrainConfig:
    model: SegmenterConfig = field(default_factory=SegmenterConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: bool = True  # rotation, flips, colour jitter; masks move with their images
    augment_preset: str = "default"  # "default" or "acquisition" (other cameras; data/augment.py)


@dataclass
class ClassifierTrainConfig:
    model: FusionConfig = field(default_factory=FusionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: bool = True
    augment_preset: str = "default"  # "default" or "acquisition" (other cameras; data/augment.py)
    # Test-time augmentation the bundle declares as its default (screening/tta.py).
    tta: str = "none"
    balanced_sampling: bool = True  # class-balanced sampler (paper), else plain shuffling
    # Weight of each image = count(its class) ** -sampling_power: 1 balances the classes fully
    # (paper), lower values keep more of the common classes (see training/data/sampling.py).
    sampling_power: float = 1.0
    # Above 0, each source is drawn in proportion to its size ** (1 - source_sampling_power) (0.5:
    # the square root, 1: every source equally) and the classes are balanced within each source,
    # so that one big source (one camera) does not make most of an epoch. 0 ignores sources.
    source_sampling_power: float = 0.0
    meta_dropout: float = 0.1  # probability each metadata field is replaced by `unknown`
    # Keep the mask branch's backbone frozen for the whole run (its pretrained features of the
    # binary mask still describe shape; saves about half the backward pass on a CPU).
    freeze_mask_backbone: bool = False
    # Keep the image backbone's stem and first N blocks at their pretrained weights for the whole
    # run (0 = fine-tune all of it): generic low-level features, and the costliest part of the
    # backward pass skipped (3 blocks of Lite0: 30-40 % of a CPU training step).
    frozen_image_blocks: int = 0
    label_smoothing: float = 0.0
    # Masks the classifier trains on: "predicted" (from the trained segmenter, as at
    # screening time, cached once per image) or "ground_truth" (the index's mask_path).
    masks: str = "predicted"
    # Start from the weights of an earlier classifier checkpoint (same model config), with a new
    # optimizer and schedule: a second fine-tuning stage. Ignored when --resume finds last.pt.
    init_from: str | None = None
    # Parts of the model left at their fresh initialisation when starting from init_from, by
    # state-dict prefix (e.g. [mask_backbone, mask_proj] to swap in a mask branch of another
    # architecture). Every other weight must be in the checkpoint, with the same shape.
    init_reset: list[str] = field(default_factory=list)
    # Folder under out_dir for this stage's checkpoints (best.pt, which evaluate and export read).
    stage_dir: str = "classifier"
    # `python -m training ensemble`: the stage folders (under out_dir) whose best.pt become the
    # members of an ensemble written to stage_dir (training/ensemble.py). Empty for training.
    ensemble_of: list[str] = field(default_factory=list)


@dataclass
class ExportConfig:
    name: str = "bundle"  # bundle name, written on every output row
    version: str = "0.1.0"
    out_dir: str | None = None  # default: engines/<name>
    opset: int = 17
    parity_images: int = 16  # validation images used for the PyTorch vs ONNX Runtime check
    parity_atol: float = 1e-4  # max |delta| allowed on probabilities and mask probabilities
    # Model card texts a person writes (training/card.py): data_sources [{name, licence, url}],
    # limitations (e.g. measured domain-shift figures), changelog, optionally intended_use.
    card: dict = field(default_factory=dict)


@dataclass
class Config:
    out_dir: str = "runs/default"  # every checkpoint, cache and report of this config goes here
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # Convolutions in NHWC ("channels last") while training and evaluating: about 30 % less time
    # per training step on the CPU than NCHW (bench/train_step.py, docs/results.md). Results
    # differ from NCHW only by float rounding; false reproduces runs made before this setting.
    channels_last: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    segmenter: SegmenterTrainConfig = field(default_factory=SegmenterTrainConfig)
    classifier: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    @property
    def out(self) -> Path:
        return Path(self.out_dir)

    @property
    def classifier_dir(self) -> Path:
        """Where the classifier's checkpoints go (a second fine-tuning stage has its own)."""
        return self.out / self.classifier.stage_dir


class ConfigError(ValueError):
    """A configuration file or override does not fit the schema."""


class QuoteIt(ConfigError):
    """A string field given a YAML number or boolean that does not read back as what was written."""


def _coerce(value: Any, hint: Any, where: str, texts: dict[str, str] | None = None) -> Any:
    """Turn a YAML value into the annotated type (dataclasses recursively). ``texts``: the YAML
    text of each scalar by field path (``where``), where known, for string fields given numbers."""
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(hint, value, where, texts)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, texts)
            except QuoteIt:
                raise
            except (ConfigError, TypeError, ValueError):
                continue
        raise ConfigError(f"{where}: {value!r} does not fit {hint}")
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if hint is int and float(value) != int(value):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return hint(value)
    if hint is str:
        return _string(value, where, (texts or {}).get(where))
    return value


def _string(value: Any, where: str, text: str | None) -> str:
    """A string field's value. YAML reads unquoted 2.10 as the number 2.1 and yes/off as booleans:
    those are refused (the text written is lost), and so is an integer whose text is not its
    plain decimal form (010 is 8, 1_000 is 1000); an integer written plainly (3) is kept as "3"."""
    if value is None:
        raise ConfigError(f"{where}: expected a string, got nothing")
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and (text is None or text == str(value)):
        return str(value)
    if isinstance(value, (bool, int, float)):
        written = text if text is not None else str(value).lower() if isinstance(value, bool) else repr(value)
        kind = "a boolean" if isinstance(value, bool) else "the number"
        raise QuoteIt(f"{where}: expected text, but YAML reads {written} as {kind} {value!r}; quote it: "
                      f"'{written}' (on the command line: --set \"{where.removeprefix('config.')}='{written}'\")")
    return str(value)  # a date or time YAML parsed: str() gives back the text


def from_dict(cls: type, data: dict[str, Any], where: str = "config", texts: dict[str, str] | None = None) -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys are an error that lists the valid ones."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}", texts) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def apply_override(data: dict[str, Any], assignment: str, texts: dict[str, str] | None = None) -> None:
    """Apply one ``dotted.key=value`` override (value parsed as YAML) to a nested mapping; with
    ``texts``, also record the YAML text of its scalars by field path."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} is not of the form key=value")
    key, raw = assignment.split("=", 1)
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {part} is not a section")
    try:
        node[leaf] = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {assignment!r}: not YAML: {exc}") from exc
    if texts is not None:
        _record_texts(texts, ".".join(["config", *parents, leaf]), _scalar_texts(raw))


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Defaults <- YAML file (after the files it names as ``base``) <- ``key=value`` overrides,
    validated against the dataclasses."""
    merged = to_dict(Config())
    texts: dict[str, str] = {}  # YAML text of each scalar by field path, for string fields' checks
    if path is not None:
        for layer, layer_texts in _config_layers(Path(path)):
            _deep_update(merged, layer)
            _record_texts(texts, "config", layer_texts, merge=True)
    for assignment in overrides:
        apply_override(merged, assignment, texts)
    config = from_dict(Config, merged, "config", texts)
    _check_choices(config)
    return config


def _scalar_texts(text: str) -> Any:
    """``text`` parsed with every scalar left as the text written (YAML's BaseLoader); None when
    that fails (the texts are only for messages and the integer check)."""
    try:
        return yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 (BaseLoader builds no objects)
    except yaml.YAMLError:
        return None


def _record_texts(texts: dict[str, str], where: str, node: Any, merge: bool = False) -> None:
    """Record the scalar texts of ``node`` (from ``_scalar_texts``) under ``where``, as the value
    they belong to was put there: replacing what was there (an override), or merged into it
    mapping by mapping (a config layer, as ``_deep_update`` merges it)."""
    if not (merge and isinstance(node, dict)):
        for key in [k for k in texts if k == where or k.startswith(f"{where}.")]:
            del texts[key]
    else:
        texts.pop(where, None)
    if isinstance(node, dict):
        for key, value in node.items():
            _record_texts(texts, f"{where}.{key}", value, merge)
    elif isinstance(node, str):
        texts[where] = node


def _config_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[dict[str, Any], Any]]:
    """The YAML mappings to merge, the farthest ``base`` first, each with its scalar texts.
    ``base: other.yaml`` (relative to the file that names it) lets a second training stage say
    only what it changes."""
    if path.resolve() in seen:
        raise ConfigError(f"config {path}: its base chain comes back to itself")
    try:
        text = path.read_text(encoding="utf-8")
        loaded = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"config {path}: expected a mapping of sections, got {type(loaded).__name__}")
    texts = _scalar_texts(text)
    base = loaded.pop("base", None)
    if base is None:
        return [(loaded, texts)]
    if not isinstance(base, str):
        raise ConfigError(f"config {path}: base must be a file name, got {base!r}")
    return [*_config_layers(path.parent / base, (*seen, path.resolve())), (loaded, texts)]


SCHEDULES = ("plateau", "cosine")


def _check_choices(config: Config) -> None:
    """Refuse values the dataclass types cannot: a misspelt schedule would otherwise train a run."""
    for stage in ("segmenter", "classifier"):
        optim = getattr(config, stage).optim
        if optim.schedule not in SCHEDULES:
            raise ConfigError(f"{stage}.optim.schedule: {optim.schedule!r} is not one of {list(SCHEDULES)}")
        if not 0.0 <= optim.min_lr_ratio <= 1.0:
            raise ConfigError(f"{stage}.optim.min_lr_ratio: expected 0..1, got {optim.min_lr_ratio}")
    from screening.preprocess import preprocessing_problems
    from screening.tta import TTA_MODES

    from .data.augment import AUGMENT_PRESETS
    for problem in preprocessing_problems(config.data.preprocessing):
        raise ConfigError(f"data.{problem}")
    for stage in ("segmenter", "classifier"):
        preset = getattr(config, stage).augment_preset
        if preset not in AUGMENT_PRESETS:
            raise ConfigError(f"{stage}.augment_preset: {preset!r} is not one of {list(AUGMENT_PRESETS)}")
    if config.classifier.tta not in TTA_MODES:
        raise ConfigError(f"classifier.tta: {config.classifier.tta!r} is not one of {list(TTA_MODES)}")
    for name in ("sampling_power", "source_sampling_power"):
        if not 0.0 <= getattr(config.classifier, name) <= 1.0:
            raise ConfigError(f"classifier.{name}: expected 0..1, got {getattr(config.classifier, name)}")
    if config.classifier.source_sampling_power > 0.0 and not config.classifier.balanced_sampling:
        raise ConfigError("classifier.source_sampling_power needs classifier.balanced_sampling: true "
                          "(plain shuffling ignores sources)")


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


def save_config(config: Config, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")
