"""`python -m training ablation`: the paper's ablation table on frozen, cached backbone features.

Five classifier variants (image only; concat fusion; cross-attention with metadata, with the
mask, with both) are trained and scored on the validation split with the same data, split and
seed. On a CPU, fine-tuning five pairs of backbones is out of reach, so the backbones keep
their pretrained weights and their outputs are computed once per image and cached in
``<out_dir>/ablation/features.npz``; each variant then trains only its projections,
attention, metadata MLP and head, through ``FusionClassifier.forward_from_features``, the
same code the exported model runs. The table goes to ``ablation.json`` and ``ablation.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from screening.manifest import sha256_file
from screening.metadata import DEFAULT_VOCABULARY, MetaCodes
from screening.preprocess import softmax

from .common import (Distributed, config_argument_parser, config_from_args, read_index, seed_everything,
                     split, write_run_files)
from .config import Config
from .data.classes import get_class_config
from .data.dataset import ClassificationDataset
from .data.sampling import class_balanced_sampler
from .evaluate import _segmentation
from .masks import segmenter_checkpoint
from .metrics import VALIDATION_SCORE_TERMS, classification_report, validation_score
from .models.fusion import FusionClassifier, FusionConfig, freeze_backbones
from .models.weights import weights_kind
from .train_classifier import classifier_normalisation, mask_source

DEFAULT_EPOCHS = 30
FEATURES_FILE = "features.npz"
SPLITS = ("train", "val")
# (report key, table heading), in the paper's column order.
COLUMNS = (
    ("accuracy", "Accuracy"),
    ("macro_precision", "Macro precision"),
    ("macro_recall", "Macro recall"),
    ("macro_f1", "Macro F1"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("macro_auc", "Macro AUC"),
    ("malignant_auc", "Malignant AUC"),
    ("melanoma_auc", "Melanoma AUC"),
)


@dataclass(frozen=True)
class Variant:
    """One row of the table: the FusionConfig switches that make it."""

    key: str  # short identifier, used in file names and JSON
    name: str  # the row label of the table
    use_meta: bool
    use_mask: bool
    fusion: str = "cross_attention"


VARIANTS = (
    Variant("image_only", "image only", use_meta=False, use_mask=False),
    Variant("concat", "concat fusion (meta + mask)", use_meta=True, use_mask=True, fusion="concat"),
    Variant("attention_meta", "cross-attention, meta only", use_meta=True, use_mask=False),
    Variant("attention_mask", "cross-attention, mask only", use_meta=False, use_mask=True),
    Variant("attention_meta_mask", "cross-attention, meta + mask (proposed)", use_meta=True, use_mask=True),
)


@dataclass
class SplitFeatures:
    """Cached backbone outputs of one split, one entry per index row in index order."""

    feature_maps: np.ndarray  # (N, C, h, w) float16: the image backbone's forward_features
    mask_vectors: np.ndarray  # (N, C_mask) float32: the mask branch's pooled backbone vector
    codes: np.ndarray  # (N, 3) int64 metadata codes (age, sex, site), before any dropout
    labels: np.ndarray  # (N,) int64 class indices
    image_ids: np.ndarray  # (N,) str

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class FeatureCache:
    """The cached features of both splits and whether they came from disk."""

    splits: dict[str, SplitFeatures]
    reused: bool
    path: Path
    backbones: dict[str, dict[str, torch.Tensor]]  # state dicts of the frozen image and mask backbones
    seconds: float  # time spent computing (0 when reused) or loading


def ablation_dir(config: Config) -> Path:
    return config.out / "ablation"


def _feature_model_config(config: Config) -> FusionConfig:
    """The classifier config with both branches on: the backbones every variant shares."""
    return dataclasses.replace(config.classifier.model, use_meta=True, use_mask=True, fusion="cross_attention")


def _weights_identity(spec: str | None) -> str | None:
    """A weights spec, with a local file's sha256 so a replaced file invalidates the cache."""
    return f"{spec} sha256:{sha256_file(Path(spec))}" if weights_kind(spec) == "file" else spec


def feature_cache_key(config: Config, mask_dir: Path | None) -> dict[str, Any]:
    """Everything the cached features depend on; a different key recomputes them.

    Args:
        config: the run's configuration.
        mask_dir: the predicted-mask cache, or None when the classifier uses ground-truth masks.

    Returns:
        A JSON-ready mapping: backbones and their weights, input size, mask input and
        threshold, the mask source (segmenter checkpoint sha256 or ground truth), the index's
        sha256, the classes, the metadata vocabulary, and the seed when a backbone is random.
    """
    model = _feature_model_config(config)
    mask_backbone = model.mask_backbone or model.image_backbone
    random_init = "none" in (weights_kind(model.image_weights), weights_kind(model.mask_weights))
    masks: Any = "ground_truth"
    if mask_dir is not None:
        masks = {"predicted": str(mask_dir),
                 "segmenter_sha256": json.loads((mask_dir / "source.json").read_text())["sha256"]}
    return {
        "image_backbone": model.image_backbone,
        "image_weights": _weights_identity(model.image_weights),
        "mask_backbone": mask_backbone,
        "mask_weights": _weights_identity(model.mask_weights),
        "mask_input_mode": model.mask_input_mode,
        "mask_threshold": model.mask_threshold,
        "input_size": config.data.input_size,
        "masks": masks,
        "index_sha256": sha256_file(Path(config.data.index)),
        "classes": get_class_config(config.data.classes).class_names,
        "vocabulary": DEFAULT_VOCABULARY.to_dict(),
        # Random-init backbones are only reproducible from the seed they were drawn with.
        "init_seed": config.seed if random_init else None,
    }


def _split_dataset(config: Config, rows: pd.DataFrame, mask_dir: Path | None) -> ClassificationDataset:
    """The rows as the classifier would see them, without augmentation or metadata dropout."""
    mean, std = classifier_normalisation(config)
    return ClassificationDataset(rows, input_size=config.data.input_size, mean=mean, std=std,
                                 vocabulary=DEFAULT_VOCABULARY,
                                 class_names=get_class_config(config.data.classes).class_names,
                                 mask_dir=mask_dir, augment=False, meta_dropout=0.0, seed=config.seed,
                                 preprocessing=config.data.preprocessing)


@torch.inference_mode()
def compute_split_features(model: FusionClassifier, dataset: ClassificationDataset, batch_size: int,
                           workers: int, device: torch.device, desc: str) -> SplitFeatures:
    """Run the frozen backbones of ``model`` over every item of ``dataset`` once.

    Args:
        model: a classifier with both branches on, in eval mode, on ``device``.
        dataset: the split, unaugmented.
        batch_size: images per forward pass.
        workers: DataLoader worker processes.
        device: where the backbones run.
        desc: progress bar label.

    Returns:
        The split's feature maps (float16), mask vectors, metadata codes, labels and image ids.
    """
    maps, vectors = None, None
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    start = 0
    for batch in tqdm(loader, desc=desc, dynamic_ncols=True, disable=None):
        feature_map, mask_vector = model.backbone_features(batch["image"].to(device), batch["mask"].to(device))
        if maps is None:
            maps = np.empty((len(dataset), *feature_map.shape[1:]), dtype=np.float16)
            vectors = np.empty((len(dataset), mask_vector.shape[1]), dtype=np.float32)
        stop = start + len(feature_map)
        maps[start:stop] = feature_map.float().cpu().numpy()
        vectors[start:stop] = mask_vector.float().cpu().numpy()
        start = stop
    codes = np.array([[c.age, c.sex, c.site] for c in dataset.codes], dtype=np.int64)
    return SplitFeatures(maps, vectors, codes, np.asarray(dataset.labels, dtype=np.int64),
                         dataset.rows["image_id"].to_numpy(dtype=str))


def _save_features(path: Path, key: dict[str, Any], splits: dict[str, SplitFeatures],
                   backbones: dict[str, dict[str, torch.Tensor]]) -> None:
    """Write features and backbone weights atomically, the key last, so a killed run leaves no half cache."""
    arrays = {f"{name}.{field.name}": getattr(features, field.name)
              for name, features in splits.items() for field in dataclasses.fields(SplitFeatures)}
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)
    torch.save(backbones, path.with_name("backbones.pt"))
    path.with_name("features.json").write_text(json.dumps(key, indent=2) + "\n")


def _load_features(path: Path) -> tuple[dict[str, SplitFeatures], dict[str, dict[str, torch.Tensor]]]:
    with np.load(path) as data:
        splits = {name: SplitFeatures(**{field.name: data[f"{name}.{field.name}"]
                                         for field in dataclasses.fields(SplitFeatures)})
                  for name in SPLITS}
    backbones = torch.load(path.with_name("backbones.pt"), map_location="cpu", weights_only=True)
    return splits, backbones


def cached_features(config: Config, index: pd.DataFrame, mask_dir: Path | None) -> FeatureCache:
    """The backbone features of the train and validation splits, computed once and reused.

    Args:
        config: the run's configuration (backbones, weights, input size, batch size, device).
        index: the prepared index.
        mask_dir: the predicted-mask cache, or None for the index's ground-truth masks.

    Returns:
        The features; ``reused`` says whether they were read from an earlier run's cache.
    """
    path = ablation_dir(config) / FEATURES_FILE
    key = feature_cache_key(config, mask_dir)
    key_file = path.with_name("features.json")
    start = time.perf_counter()
    complete = path.is_file() and key_file.is_file() and path.with_name("backbones.pt").is_file()
    if complete and json.loads(key_file.read_text()) == key:
        splits, backbones = _load_features(path)
        return FeatureCache(splits, True, path, backbones, time.perf_counter() - start)

    device = Distributed().device(config.device)
    seed_everything(config.seed)
    extractor = FusionClassifier(_feature_model_config(config), meta_dim=DEFAULT_VOCABULARY.dim,
                                 num_classes=len(key["classes"])).eval().to(device)
    splits = {name: compute_split_features(extractor, _split_dataset(config, split(index, name), mask_dir),
                                           config.classifier.optim.batch_size, config.data.workers, device,
                                           f"backbone features ({name})")
              for name in SPLITS}
    backbones = {name: {k: v.cpu() for k, v in backbone.state_dict().items()}
                 for name, backbone in extractor.named_backbones().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_features(path, key, splits, backbones)
    return FeatureCache(splits, False, path, backbones, time.perf_counter() - start)


def variant_model(config: Config, variant: Variant, backbones: dict[str, dict[str, torch.Tensor]],
                  num_classes: int) -> FusionClassifier:
    """The classifier of one variant, with the cached run's frozen backbones loaded.

    With the backbones in place the model is complete: ``forward(image, mask, meta)`` gives
    what the head trained on cached features gives, up to the float16 storage of the maps.
    """
    cfg = dataclasses.replace(config.classifier.model, use_meta=variant.use_meta, use_mask=variant.use_mask,
                              fusion=variant.fusion, image_weights=None, mask_weights=None)
    model = FusionClassifier(cfg, meta_dim=DEFAULT_VOCABULARY.dim, num_classes=num_classes)
    for name, backbone in model.named_backbones().items():
        backbone.load_state_dict(backbones[name])
    freeze_backbones(model)
    return model


def _meta(codes: np.ndarray, dropout: float, rng: np.random.Generator) -> torch.Tensor:
    """One-hot metadata; with ``dropout`` each field becomes unknown with that probability, as in training."""
    if dropout > 0.0:
        unknown = np.array(dataclasses.astuple(DEFAULT_VOCABULARY.unknown_codes()))
        codes = np.where(rng.random(codes.shape) < dropout, unknown, codes)
    return torch.from_numpy(np.stack([DEFAULT_VOCABULARY.one_hot(MetaCodes(*map(int, row))) for row in codes]))


def _inputs(features: SplitFeatures, items: np.ndarray, device: torch.device, meta_dropout: float = 0.0,
            rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(feature_map, mask_vector, meta) float32 tensors of the given items."""
    return (torch.from_numpy(features.feature_maps[items]).float().to(device),
            torch.from_numpy(features.mask_vectors[items]).to(device),
            _meta(features.codes[items], meta_dropout, rng).to(device))


def _epoch_batches(labels: np.ndarray, batch_size: int, sampler) -> Iterator[np.ndarray]:
    """One epoch's batches of item indices; the last, short batch dropped as train_classifier does."""
    order = np.fromiter(iter(sampler), dtype=np.int64, count=len(labels))
    stop = len(order) - len(order) % batch_size if len(order) > batch_size else len(order)
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


@torch.no_grad()
def predict_from_features(model: FusionClassifier, features: SplitFeatures, batch_size: int,
                          device: torch.device) -> np.ndarray:
    """Logits (N, classes) of every item, in order, with the model in eval mode."""
    model.eval()
    items = np.arange(len(features))
    batches = (items[start:start + batch_size] for start in range(0, len(items), batch_size))
    return torch.cat([model.forward_from_features(*_inputs(features, batch, device)).cpu()
                      for batch in batches]).numpy()


def _sampler(config: Config, labels: np.ndarray) -> torch.utils.data.Sampler:
    """Class-balanced (or plain shuffled) draws, as train_classifier makes them, seeded."""
    if config.classifier.balanced_sampling:
        return class_balanced_sampler(labels, seed=config.seed, power=config.classifier.sampling_power)
    generator = torch.Generator().manual_seed(config.seed)
    return torch.utils.data.RandomSampler(range(len(labels)), generator=generator)


def _train_epoch(model: FusionClassifier, optimizer: torch.optim.Optimizer, loss_fn: torch.nn.Module,
                 train: SplitFeatures, sampler: torch.utils.data.Sampler, rng: np.random.Generator,
                 config: Config, device: torch.device) -> None:
    model.train()
    for items in _epoch_batches(train.labels, config.classifier.optim.batch_size, sampler):
        inputs = _inputs(train, items, device, config.classifier.meta_dropout, rng)
        loss = loss_fn(model.forward_from_features(*inputs), torch.from_numpy(train.labels[items]).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def train_variant(config: Config, variant: Variant, cache: FeatureCache, epochs: int) -> dict[str, Any]:
    """Train one variant's head on the cached features; the report of its best validation epoch.

    AdamW with the config's learning rate and weight decay, ReduceLROnPlateau on the
    validation loss, cross-entropy with the config's label smoothing, class-balanced sampling
    and metadata dropout as configured. Seeds are reset per variant, so every row sees the
    same batches in the same order.

    Args:
        config: the run's configuration.
        variant: which switches to train.
        cache: the cached features and frozen backbones.
        epochs: training epochs.

    Returns:
        The row: variant, best epoch, seconds, the table's metrics and the full classification report.
    """
    start = time.perf_counter()
    classes = get_class_config(config.data.classes)
    device = Distributed().device(config.device)
    optim = config.classifier.optim
    train, val = cache.splits["train"], cache.splits["val"]
    seed_everything(config.seed)
    model = variant_model(config, variant, cache.backbones, len(classes.class_names)).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=optim.lr,
                                  weight_decay=optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=optim.plateau_factor, patience=optim.plateau_patience)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.classifier.label_smoothing)
    sampler, rng = _sampler(config, train.labels), np.random.default_rng(config.seed)
    best: dict[str, Any] = {"score": -math.inf}
    for epoch in tqdm(range(epochs), desc=variant.name, dynamic_ncols=True, disable=None, leave=False):
        _train_epoch(model, optimizer, loss_fn, train, sampler, rng, config, device)
        logits = predict_from_features(model, val, optim.batch_size, device)
        val_loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(val.labels))
        scheduler.step(float(val_loss))
        report = classification_report(val.labels, softmax(logits), classes.class_names,
                                       classes.malignant_indices)
        if validation_score(report) > best["score"]:
            best = {"score": validation_score(report), "epoch": epoch + 1, "report": report}
    return {"key": variant.key, "variant": variant.name, "fusion": variant.fusion, "use_meta": variant.use_meta,
            "use_mask": variant.use_mask, "best_epoch": best["epoch"], "epochs": epochs, "score": best["score"],
            "seconds": time.perf_counter() - start, **{key: best["report"][key] for key, _ in COLUMNS},
            "report": best["report"]}


def _check_runnable(config: Config) -> None:
    """Refuse, before the expensive feature caching, what the ablation cannot run."""
    if config.classifier.source_sampling_power > 0.0:
        # The feature caches do not keep the sources: refused rather than silently unbalanced.
        raise SystemExit("error: the frozen-feature ablation does not balance sources; set "
                         "classifier.source_sampling_power to 0 for it")
    if config.classifier.masks == "predicted" and not segmenter_checkpoint(config).is_file():
        raise SystemExit(f"error: classifier.masks is 'predicted' but {segmenter_checkpoint(config)} does not "
                         f"exist; train the segmenter first (python -m training segmenter --config ...)")


def seed_summary(runs: list[dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """One table row from a variant's runs, one per seed.

    A single seed gives its run as is. Several give, per metric, the mean (the row's value) and
    the sample standard deviation (``row["sd"]``), with every run kept under ``row["runs"]``:
    how far the rows of the table differ from each other only means something next to how far
    one row moves when nothing but the seed changes. A metric that one run could not compute
    (an AUC with a class absent) has no mean.
    """
    if len(runs) == 1:
        return {**runs[0], "seeds": list(seeds)}
    first = runs[0]
    row = {key: first[key] for key in ("key", "variant", "fusion", "use_meta", "use_mask", "epochs")}
    row.update(seeds=list(seeds), best_epochs=[run["best_epoch"] for run in runs],
               seconds=sum(run["seconds"] for run in runs), sd={})
    for key, _ in COLUMNS:
        values = [run[key] for run in runs]
        missing = None in values
        row[key] = None if missing else float(np.mean(values))
        row["sd"][key] = None if missing else float(np.std(values, ddof=1))
    row["runs"] = [{**run, "seed": seed} for run, seed in zip(runs, seeds, strict=True)]
    return row


def run_ablation(config: Config, epochs: int = DEFAULT_EPOCHS, command: str | None = None,
                 seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Cache the backbone features, train every variant, write ablation.json and ablation.md.

    Args:
        config: the run's configuration (its out_dir receives ``ablation/``).
        epochs: training epochs per variant.
        command: the command line that produced the table, shown under it.
        seeds: train every variant once per seed and report mean and standard deviation
            (default: the config's seed alone). The split and the cached features stay fixed;
            the seed changes the heads' initialisation, batch order and metadata dropout.

    Returns:
        The result written to ``ablation.json``: rows in VARIANTS order, segmentation, cache facts.
    """
    if epochs < 1:
        raise SystemExit(f"error: --epochs must be at least 1, got {epochs}")
    _check_runnable(config)
    index = read_index(config)
    out = ablation_dir(config)
    write_run_files(config, out)
    mask_dir = mask_source(config, index)
    cache = cached_features(config, index, mask_dir)
    print(("reused" if cache.reused else "computed") + f" cached backbone features: {cache.path}")
    seeds = [config.seed] if not seeds else list(seeds)
    rows = [seed_summary([train_variant(dataclasses.replace(config, seed=seed), variant, cache, epochs)
                          for seed in seeds], seeds)
            for variant in VARIANTS]
    model = config.classifier.model
    result = {
        "split": "val",
        "note": "backbones frozen, features cached",
        "command": command,
        "epochs": epochs,
        "seeds": seeds,
        "selection": f"per variant, the epoch with the best validation {VALIDATION_SCORE_TERMS}",
        "images": {name: len(features) for name, features in cache.splits.items()},
        "classes": get_class_config(config.data.classes).class_names,
        "backbones": {"image": [model.image_backbone, model.image_weights],
                      "mask": [model.mask_backbone or model.image_backbone, model.mask_weights]},
        "masks": config.classifier.masks,
        "feature_cache": {"path": str(cache.path), "reused": cache.reused, "seconds": cache.seconds,
                          "feature_map_shape": list(cache.splits["val"].feature_maps.shape[1:])},
        "rows": rows,
        "segmentation": _segmentation(config, split(index, "val")) if mask_dir is not None else None,
    }
    (out / "ablation.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "ablation.md").write_text(render_markdown(result))
    return result


def _cell(row: dict[str, Any], key: str) -> str:
    value, sd = row[key], row.get("sd", {}).get(key)
    if value is None:
        return "n/a"
    return f"{value:.3f}" if sd is None else f"{value:.3f} ± {sd:.3f}"


def render_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table: one row per variant, the paper's columns (mean ± sd over several seeds)."""
    lines = ["| Variant | " + " | ".join(heading for _, heading in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + row["variant"] + " | " + " | ".join(_cell(row, key) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def segmentation_line(segmentation: dict[str, Any] | None) -> str:
    """One line on the segmenter's validation masks (or why there is none)."""
    if segmentation is None:
        return "Segmenter: not evaluated (the classifier used ground-truth masks)."
    if not segmentation.get("n_images"):
        return "Segmenter: no validation image has a ground-truth mask."
    return (f"Segmenter on the {segmentation['n_images']} validation masks: Dice {segmentation['dice']:.3f}, "
            f"thresholded Jaccard {segmentation['thresholded_jaccard']:.3f} (a per-image Jaccard below "
            f"{segmentation['jaccard_threshold']:.2f} scores 0).")


def render_markdown(result: dict[str, Any]) -> str:
    """ablation.md: what was run, the table, the segmenter line and the command."""
    (image, image_weights), (mask, mask_weights) = result["backbones"]["image"], result["backbones"]["mask"]
    images = result["images"]
    feature_map = "x".join(map(str, result["feature_cache"]["feature_map_shape"]))
    seeds = result["seeds"]
    seeding = "seed" if len(seeds) == 1 else f"seeds ({', '.join(map(str, seeds))})"
    per_seed = "" if len(seeds) == 1 else (
        f", per seed; values are the mean ± sample standard deviation over the {len(seeds)} seeds (the seed "
        f"changes the heads' initialisation, batch order and metadata dropout)")
    text = [
        "# Ablation on the validation split",
        "",
        f"Backbones frozen, features cached: the image backbone ({image}, weights {image_weights or 'none'}) "
        f"and the mask backbone ({mask}, weights {mask_weights or 'none'}) keep their weights; their outputs "
        f"were computed once per image (feature map {feature_map}) and only "
        f"the projections, attention, metadata MLP and head were trained, {result['epochs']} epochs per "
        f"variant. Same data, split and {seeding} for every row: {images['train']} training and "
        f"{images['val']} validation images, classes {', '.join(result['classes'])}, "
        f"{result['masks'].replace('_', ' ')} masks. Each row is "
        f"{result['selection'].removeprefix('per variant, ')}{per_seed}.",
        "",
        render_table(result["rows"]),
        "",
        segmentation_line(result["segmentation"]),
        "",
    ]
    if result["command"]:
        text += [f"Command: `{result['command']}`", ""]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = config_argument_parser("ablation", "The ablation table on the validation split, with frozen "
                                    "backbones whose features are cached once.")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"training epochs per variant on the cached features (default {DEFAULT_EPOCHS})")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                        help="train every variant once per seed and report mean ± standard deviation "
                             "(default: the config's seed alone)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.seeds and len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    config = config_from_args(args)
    command = shlex.join(["python", "-m", "training", "ablation", *argv])
    result = run_ablation(config, epochs=args.epochs, command=command, seeds=args.seeds)
    print(render_table(result["rows"]))
    print(segmentation_line(result["segmentation"]))
    print(f"table written to {ablation_dir(config) / 'ablation.md'}")
    return 0
