"""`python -m training classifier`: train the fusion classifier on image, predicted mask and metadata."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from screening.metadata import DEFAULT_VOCABULARY

from .common import (Distributed, config_argument_parser, config_from_args, load_checkpoint, place, read_index,
                     seed_everything, split, unwrap, write_run_files)
from .config import Config
from .data.classes import get_class_config
from .data.augment import AUGMENT_PRESETS
from .data.dataset import ClassificationDataset
from .data.sampling import class_balanced_sampler
from .inference import classifier_state
from .lineage import (MASKS_FROM, PIXELS, SETTINGS, check_pixels, guard_resume, masks_record, pixels_of,
                      stage_settings)
from .loop import Validation, fit, make_optimizer
from .masks import cache_masks, segmenter_checkpoint
from .metrics import classification_report, validation_score
from .models.fusion import FusionClassifier, backbone_parameters, freeze_backbones, freeze_image_stem
from .models.weights import normalisation_for, weights_kind


def classifier_normalisation(config: Config) -> tuple[list[float], list[float]]:
    model = config.classifier.model
    return normalisation_for(model.image_backbone, model.image_weights)


def load_initial_weights(net: torch.nn.Module, state: dict[str, torch.Tensor], reset: list[str]) -> None:
    """Load an earlier stage's weights into ``net``, leaving the parts named in ``reset`` fresh.

    Strict everywhere else: a weight missing from the checkpoint, one the model lacks, or a shape
    that differs stops the run with the names, rather than training from half-loaded weights.
    A ``reset`` prefix that names nothing in the model is refused too (a typo would otherwise
    quietly load the weights it meant to drop).
    """
    own = net.state_dict()
    unknown = _unknown_parts(reset, own)
    if unknown:
        raise ValueError(unknown)
    kept = {key: value for key, value in state.items() if not _in_part(key, reset)}
    wanted = {key for key in own if not _in_part(key, reset)}
    missing, extra = sorted(wanted - set(kept)), sorted(set(kept) - wanted)
    shapes = sorted(key for key in wanted & set(kept) if tuple(kept[key].shape) != tuple(own[key].shape))
    problems = [f"{label}: {_by_part(keys)}" for label, keys in (
        ("not in the checkpoint", missing), ("not in this model", extra), ("of another shape", shapes)) if keys]
    if problems:
        raise ValueError("the init_from checkpoint does not fit this model outside classifier.init_reset ("
                         + "; ".join(problems) + "): reset those parts, or start from a matching checkpoint")
    net.load_state_dict(kept, strict=False)


def check_stage(config: Config) -> None:
    """Refuse stage settings that would train something other than what they seem to ask for.

    A mask branch without pretrained weights that starts fresh (no ``init_from``, or reset by
    ``init_reset``) must be trained: kept frozen it would feed random features for the whole run.
    Every name in ``init_reset`` must be a part of the model (a typo would load what it meant to drop).
    """
    cls = config.classifier
    if cls.init_reset and not cls.init_from:
        raise SystemExit("error: classifier.init_reset only applies with classifier.init_from")
    fresh_mask = weights_kind(cls.model.mask_weights) == "none" and (
        not cls.init_from or _swaps_mask_branch(cls.init_reset))
    fresh_image = weights_kind(cls.model.image_weights) == "none" and (
        not cls.init_from or any(_in_part(part, ["image_backbone"]) for part in cls.init_reset))
    if cls.frozen_image_blocks and fresh_image:
        raise SystemExit("error: classifier.frozen_image_blocks would keep the image backbone's stem at its random "
                         "initialisation: give it pretrained weights (image_weights) or init_from, or set it to 0")
    if cls.model.use_mask and cls.freeze_mask_backbone and fresh_mask:
        raise SystemExit("error: classifier.freeze_mask_backbone would keep a mask branch without pretrained weights "
                         "at its random initialisation: set freeze_mask_backbone: false to train it")
    if cls.init_reset:
        # The model's names without loading any weights (a hub spec would download them).
        bare = replace(cls.model, image_weights=None, mask_weights=None)
        unknown = _unknown_parts(cls.init_reset, FusionClassifier(bare, DEFAULT_VOCABULARY.dim, 2).state_dict())
        if unknown:
            raise SystemExit(f"error: {unknown}")


# Model settings that change what the weights mean without changing their shapes.
SAME_SHAPE_SETTINGS = ("image_backbone", "mask_backbone", "heads", "d_model", "use_meta", "use_mask", "fusion",
                       "mask_input_mode", "mask_threshold")


def check_start(start: dict, class_names: list[str], mean, std, model_cfg, reset: list[str]) -> None:
    """ValueError unless the ``init_from`` checkpoint was trained for the same task and inputs.

    Shapes alone miss these: the same number of classes in another order, other normalisation
    of the pixels, another number of attention heads or mask threshold all load without a
    complaint and train from weights that mean something else. A reset mask branch may differ.
    """
    problems = []
    if start.get("class_names") is not None and list(start["class_names"]) != list(class_names):
        problems.append(f"classes {start['class_names']} (this config: {list(class_names)})")
    for name, value in (("mean", mean), ("std", std)):
        if start.get(name) is not None and [round(float(v), 6) for v in start[name]] != [round(float(v), 6) for v in value]:
            problems.append(f"pixel {name} {start[name]} (this config: {list(value)})")
    earlier = start.get("model_config") or {}
    swapped = {"mask_backbone"} if _swaps_mask_branch(reset) else set()
    for name in SAME_SHAPE_SETTINGS:
        if name in earlier and name not in swapped and _effective(earlier, name) != _effective(vars(model_cfg), name):
            problems.append(f"model {name} {earlier[name]!r} (this config: {getattr(model_cfg, name)!r})")
    if problems:
        raise ValueError("the init_from checkpoint was trained with other " + "; ".join(problems))


def _effective(model_config: dict, name: str):
    """A model setting as the model reads it: no mask backbone means the image backbone's twin."""
    if name == "mask_backbone":
        return model_config.get("mask_backbone") or model_config.get("image_backbone")
    return model_config.get(name)


def set_epoch_freezing(net: FusionClassifier, epoch: int, freeze_epochs: int, freeze_mask_backbone: bool) -> bool:
    """Freeze the backbones for this epoch; whether it is a warm-up epoch.

    The warm-up protects pretrained features from a random head; a branch trained from scratch
    (a light mask branch) has none to protect and learns from the first step.
    """
    frozen = epoch < freeze_epochs
    freeze_backbones(net, frozen, branches=tuple(net.pretrained_branches()))
    if freeze_mask_backbone:
        freeze_backbones(net, True, branches=("mask",))
    return frozen


def _in_part(key: str, parts: list[str]) -> bool:
    """Whether a state-dict key (or a deeper name) lies in one of ``parts`` (state-dict prefixes)."""
    return any(key == part or key.startswith(part + ".") for part in parts)


def _swaps_mask_branch(reset: list[str]) -> bool:
    """Whether ``init_reset`` starts the mask branch's backbone (or a piece of it) fresh."""
    return any(_in_part(name, ["mask_backbone"]) for name in reset)


def _unknown_parts(reset: list[str], keys) -> str | None:
    """The refusal for names in ``reset`` that are no part of a model with these state-dict keys."""
    unknown = [name for name in reset if not any(_in_part(key, [name]) for key in keys)]
    if not unknown:
        return None
    return (f"classifier.init_reset names no part of the model: {', '.join(unknown)} "
            f"(parts: {', '.join(sorted({key.split('.')[0] for key in keys}))})")


def _by_part(keys: list[str]) -> str:
    """'mask_proj (3 tensors), head (1 tensor)': state-dict keys counted by top-level part."""
    parts = Counter(key.split(".")[0] for key in keys)
    return ", ".join(f"{part} ({n} tensor{'s' if n > 1 else ''})" for part, n in parts.items())


def build_datasets(config: Config, index, mask_dir: Path | None):
    classes = get_class_config(config.data.classes)
    mean, std = classifier_normalisation(config)
    common = dict(input_size=config.data.input_size, mean=mean, std=std, vocabulary=DEFAULT_VOCABULARY,
                  class_names=classes.class_names, mask_dir=mask_dir, preprocessing=config.data.preprocessing)
    train_set = ClassificationDataset(split(index, "train"), augment=config.classifier.augment,
                                      augment_config=AUGMENT_PRESETS[config.classifier.augment_preset],
                                      meta_dropout=config.classifier.meta_dropout, seed=config.seed, **common)
    val_set = ClassificationDataset(split(index, "val"), augment=False, meta_dropout=0.0,
                                    seed=config.seed, **common)
    return train_set, val_set, classes


def uses_predicted_masks(config: Config) -> bool:
    """True for the segmenter's masks (cached once per image), False for the index's ground truth."""
    if config.classifier.masks not in ("predicted", "ground_truth"):
        raise SystemExit(f"error: classifier.masks must be 'predicted' or 'ground_truth', "
                         f"not {config.classifier.masks!r}")
    return config.classifier.masks == "predicted"


def mask_source(config: Config, index) -> Path | None:
    """Predicted masks (cached once per image) or None for the index's ground-truth masks."""
    if not uses_predicted_masks(config):
        return None
    with torch.inference_mode():
        return cache_masks(config, index)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loader: DataLoader, device: torch.device, channels_last: bool = False):
    """Logits and labels over a whole loader, in loader order."""
    logits, labels = [], []
    for batch in loader:
        inputs = (place(batch[name], device, channels_last) for name in ("image", "mask", "meta"))
        logits.append(model(*inputs).float().cpu())
        labels.append(batch["label"])
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def train(config: Config, resume: bool = False) -> Path:
    """Train the classifier of ``config``; returns the best checkpoint (highest validation score)."""
    check_stage(config)  # before the mask cache and before this stage's run files are written
    dist = Distributed.from_env()
    device = dist.device(config.device)
    stage_dir = config.classifier_dir
    index = read_index(config)
    masks_from = {MASKS_FROM: masks_record(segmenter_checkpoint(config))} if uses_predicted_masks(config) else {}
    settings = stage_settings(config, "classifier", masks_from)
    # Every rank checks (it only reads): a refusal on rank 0 alone would leave the others at the barrier.
    guard_resume(stage_dir, settings, resume, quiet=not dist.is_main)  # before mask caching and the run files
    mask_dir = mask_source(config, index) if dist.is_main else None
    if dist.enabled:
        torch.distributed.barrier()  # rank 0 fills the mask cache first
        mask_dir = mask_source(config, index)
    seed_everything(config.seed + dist.rank)
    if dist.is_main:
        write_run_files(config, stage_dir)

    train_set, val_set, classes = build_datasets(config, index, mask_dir)
    optim = config.classifier.optim
    labels = train_set.labels
    if config.classifier.balanced_sampling:
        sampler = class_balanced_sampler(labels, num_samples=len(labels) // dist.world_size,
                                         seed=config.seed + dist.rank, power=config.classifier.sampling_power,
                                         groups=train_set.sources,
                                         group_power=config.classifier.source_sampling_power)
    else:
        sampler = torch.utils.data.RandomSampler(train_set, num_samples=len(labels) // dist.world_size)
    train_loader = DataLoader(train_set, batch_size=optim.batch_size, sampler=sampler,
                              num_workers=config.data.workers, drop_last=len(train_set) > optim.batch_size,
                              persistent_workers=config.data.workers > 0)
    val_loader = DataLoader(val_set, batch_size=optim.batch_size, num_workers=config.data.workers)

    mean, std = classifier_normalisation(config)
    net = FusionClassifier(config.classifier.model, meta_dim=DEFAULT_VOCABULARY.dim, num_classes=len(classes.class_names))
    try:
        freeze_image_stem(net, config.classifier.frozen_image_blocks)
    except ValueError as exc:
        raise SystemExit(f"error: classifier.{exc}") from exc
    net = place(net, device, config.channels_last)
    model = dist.wrap(net, device)
    if config.classifier.init_from and not (resume and (stage_dir / "last.pt").is_file()):
        start = load_checkpoint(Path(config.classifier.init_from))
        try:
            check_start(start, classes.class_names, mean, std, config.classifier.model, config.classifier.init_reset)
            check_pixels(start, config, f"the init_from checkpoint {config.classifier.init_from}", size=False)
            load_initial_weights(net, start["model"], config.classifier.init_reset)
        except ValueError as exc:  # LineageError included
            raise SystemExit(f"error: {exc}") from exc
        if dist.is_main:
            print(f"starting from the weights of {config.classifier.init_from}")
    optimizer = make_optimizer(model, optim, backbone_parameters(net, pretrained_only=True))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.classifier.label_smoothing)

    def on_epoch_start(epoch: int) -> None:
        frozen = set_epoch_freezing(net, epoch, optim.freeze_epochs, config.classifier.freeze_mask_backbone)
        if dist.is_main and optim.freeze_epochs and epoch in (0, optim.freeze_epochs):
            tuned = "the image backbone" if config.classifier.freeze_mask_backbone else "every backbone"
            print("backbones frozen" if frozen else f"fine-tuning {tuned}")

    def train_step(batch) -> torch.Tensor:
        logits = model(*(place(batch[name], device, config.channels_last) for name in ("image", "mask", "meta")))
        return loss_fn(logits, batch["label"].to(device))

    def validate() -> Validation:
        logits, y = predict_logits(net, val_loader, device, config.channels_last)
        loss = float(torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)))
        probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        report = classification_report(y, probs, classes.class_names, classes.malignant_indices)
        score = validation_score(report)
        summary = {k: report[k] for k in ("accuracy", "balanced_accuracy", "macro_auc", "malignant_auc")
                   if k in report}
        return Validation(loss=dist.mean(loss, device), score=score, metrics=summary)

    extra = {**classifier_state(config.classifier.model, mean, std, DEFAULT_VOCABULARY.dim, classes.class_names),
             PIXELS: pixels_of(config), SETTINGS: settings, **masks_from}
    best = fit(model=model, optimizer=optimizer, optim=optim, train_loader=train_loader,
               train_step=train_step, validate=validate, stage_dir=stage_dir, dist=dist,
               resume=resume, on_epoch_start=on_epoch_start, extra_state=extra)
    dist.close()
    return best


def main(argv: list[str] | None = None) -> int:
    parser = config_argument_parser("classifier", "Train the fusion classifier (image + predicted mask + metadata).")
    parser.add_argument("--resume", action="store_true",
                        help="continue from last.pt in this stage's folder (<out_dir>/<classifier.stage_dir>), "
                             "with the settings the stage started with (a longer run excepted)")
    args = parser.parse_args(argv)
    best = train(config_from_args(args), resume=args.resume)
    print(f"best classifier checkpoint: {best}")
    return 0

