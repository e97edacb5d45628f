"""Model throughput (images/s): ONNX Runtime vs eager PyTorch, each measured in its own process.

Two model sets, side by side in one invocation:

- ``bundle``: a bundle's ``segmenter.onnx`` and ``classifier.onnx`` on ONNX Runtime, exactly as
  ``screen folder`` opens them; for PyTorch the same models rebuilt from the training run's
  checkpoints (``runs/<bundle>/segmenter/best.pt``, ``classifier/best.pt``).
- ``paper``: the source paper's sizes with random weights: a U-Net with a ResNet-34 encoder
  and the fusion classifier with two EfficientNet-B3 branches, at 224 px, exported to ONNX in
  a temporary folder with the bundle exporter.

Each figure is the median of ``--repeats`` timed runs (x ``--rounds``) in a fresh worker
process that loads one engine only; PyTorch and ONNX Runtime never share a process.
``--ort-variant`` adds ONNX Runtime session settings (``bench/ort_variants.py``) to compare
with what the runtime uses, among them ``fused``: both models merged into one ONNX graph.

    python bench/model_throughput.py                          # starter (or sample) + paper
    python bench/model_throughput.py --sets paper --batch-sizes 8 --ort-variant runtime no-spin
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness import (REPO, BenchError, cell, default_bundle, default_out, format_table, machine_info,
                     ratio, run_worker, spread, time_calls, warn_if_busy, worker_result, run_main, write_json)
from ort_variants import VARIANTS, tune

MODELS = ("segmenter", "classifier", "pair")  # pair: segmenter then classifier, as screening runs them
ENGINES = ("onnxruntime", "pytorch")
SEED = 0


@dataclass
class PaperConfig:
    """The paper-size models (random weights); the flags shrink them for quick checks."""

    image_backbone: str = "efficientnet_b3"  # timm name, image and mask branches
    seg_encoder: str = "resnet34"  # smp encoder name (or tu-<timm name>)
    decoder_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 32, 16])
    size: int = 224  # input height and width
    d_model: int = 256  # fusion width
    classes: int = 5  # the paper's five classes
    opset: int = 17  # as the bundle exporter


@dataclass
class ModelSet:
    """One pair of models as both engines load them."""

    name: str
    onnx: dict[str, str]  # role -> ONNX file
    torch: dict[str, Any] | None  # how the PyTorch worker rebuilds the models; None: unavailable
    torch_note: str  # where the PyTorch models come from, or why there are none
    size: tuple[int, int]
    meta_dim: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sets", nargs="+", choices=("bundle", "paper"), default=["bundle", "paper"])
    parser.add_argument("--bundle", type=Path, default=None,
                        help="bundle folder (default: engines/starter, else engines/sample)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="training run with the bundle's checkpoints (default: runs/<bundle name>)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["segmenter", "classifier"])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--ort-variant", nargs="+", choices=sorted(VARIANTS), default=["runtime"],
                        help="ONNX Runtime settings to measure (default: runtime, screening's own)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both engines (default: physical cores, as screening)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per worker (default: 3)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="times the whole plan is run, interleaved, to average out drift")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="shortest timed run (default: 2 s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per worker (default: 2)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    paper = PaperConfig()
    parser.add_argument("--paper-image-backbone", default=paper.image_backbone)
    parser.add_argument("--paper-seg-encoder", default=paper.seg_encoder)
    parser.add_argument("--paper-decoder-channels", type=int, nargs="+", default=paper.decoder_channels)
    parser.add_argument("--paper-size", type=int, default=paper.size)
    parser.add_argument("--paper-d-model", type=int, default=paper.d_model)
    parser.add_argument("--out", type=Path, default=default_out("model_throughput"),
                        help="JSON report (default: bench/results/model_throughput.json)")
    return parser.parse_args(argv)


# -- worker side (runs in its own process) -------------------------------------------------------

def make_inputs(batch: int, size: tuple[int, int], meta_dim: int) -> dict[str, np.ndarray]:
    """Deterministic inputs: normalised-looking images, lesion probabilities, one-hot metadata."""
    rng = np.random.default_rng(SEED)
    height, width = size
    image = rng.standard_normal((batch, 3, height, width), dtype=np.float32)
    feeds = {"seg_image": image, "cls_image": image.copy()}
    feeds["mask"] = rng.random((batch, 1, height, width), dtype=np.float32)
    meta = np.zeros((batch, meta_dim), np.float32)
    meta[np.arange(batch), rng.integers(0, meta_dim, batch)] = 1.0
    feeds["meta"] = meta
    return feeds


def _ort_runner(path: str, threads: int, tweaks: dict[str, Any]):
    """screening's OnnxRuntimeRunner with the variant's session settings applied on top."""
    from screening.backends.onnxrt import OnnxRuntimeRunner

    class TunedRunner(OnnxRuntimeRunner):
        def session_options(self):
            return tune(super().session_options(), tweaks)

    return TunedRunner(Path(path), threads=threads)


def fuse_pair(segmenter: str, classifier: str, target: Path) -> Path:
    """One ONNX graph: the segmenter's ``mask`` output wired into the classifier's ``mask`` input.

    Inputs become ``seg_image``, ``cls_image``, ``cls_meta``; outputs ``seg_mask``, ``cls_logits``.
    """
    import onnx
    from onnx import compose

    seg, cls = onnx.load(segmenter), onnx.load(classifier)
    merged = compose.merge_models(seg, cls, io_map=[("mask", "mask")], prefix1="seg_", prefix2="cls_",
                                  outputs=["seg_mask", "cls_logits"])
    onnx.save(merged, target)
    return target


def ort_call(spec: dict[str, Any], feeds: dict[str, np.ndarray],
             cleanup: list[Callable[[], Any]]) -> Callable[[], Any]:
    """The timed call on ONNX Runtime; what to close afterwards is added to ``cleanup``."""
    tweaks = VARIANTS[spec["variant"]]
    onnx_files, threads, model = spec["onnx"], spec["threads"], spec["model"]

    def enter(path: str):
        runner = _ort_runner(path, threads, tweaks).__enter__()
        cleanup.append(lambda: runner.__exit__(None, None, None))
        return runner

    if tweaks.get("fused"):
        folder = tempfile.TemporaryDirectory(prefix="bench-fused-")
        cleanup.append(folder.cleanup)
        fused = enter(str(fuse_pair(onnx_files["segmenter"], onnx_files["classifier"],
                                    Path(folder.name) / "pair.onnx")))
        feed = {"seg_image": feeds["seg_image"], "cls_image": feeds["cls_image"], "cls_meta": feeds["meta"]}
        return lambda: fused.infer(feed)
    seg_feed = {"image": feeds["seg_image"]}
    cls_feed = {"image": feeds["cls_image"], "mask": feeds["mask"], "meta": feeds["meta"]}
    seg = enter(onnx_files["segmenter"]) if model in ("segmenter", "pair") else None
    cls = enter(onnx_files["classifier"]) if model in ("classifier", "pair") else None
    if model == "segmenter":
        return lambda: seg.infer(seg_feed)
    if model == "classifier":
        return lambda: cls.infer(cls_feed)
    # What RunnerPairBackend.run_batch does: the mask goes through host memory.
    return lambda: cls.infer({**cls_feed, "mask": seg.infer(seg_feed)["mask"]})


def build_paper_models(cfg: dict[str, Any], meta_dim: int):
    """The paper-size segmenter (with its sigmoid, as exported) and fusion classifier."""
    import torch

    from training.inference import SegmenterWithSigmoid
    from training.models.fusion import FusionClassifier, FusionConfig
    from training.models.segmenter import SegmenterConfig, create_segmenter

    torch.manual_seed(SEED)
    seg = SegmenterWithSigmoid(create_segmenter(SegmenterConfig(
        encoder=cfg["seg_encoder"], decoder_channels=tuple(cfg["decoder_channels"]))))
    cls = FusionClassifier(FusionConfig(image_backbone=cfg["image_backbone"], d_model=cfg["d_model"]),
                           meta_dim=meta_dim, num_classes=cfg["classes"])
    return seg.eval(), cls.eval()


def torch_models(spec: dict[str, Any]):
    """Rebuild the set's PyTorch models in eval mode."""
    import torch

    source = spec["torch"]
    if source["kind"] == "paper":
        seg, cls = build_paper_models(source["config"], spec["meta_dim"])
        seg.load_state_dict(torch.load(source["segmenter"], map_location="cpu"))
        cls.load_state_dict(torch.load(source["classifier"], map_location="cpu"))
        return seg, cls
    from training.inference import SegmenterWithSigmoid, load_classifier, load_segmenter

    seg, _ = load_segmenter(Path(source["segmenter"]))
    cls, _ = load_classifier(Path(source["classifier"]))
    return SegmenterWithSigmoid(seg).eval(), cls


def measure_torch(spec: dict[str, Any], feeds: dict[str, np.ndarray]) -> list[float]:
    import torch

    torch.set_num_threads(spec["threads"])
    seg, cls = torch_models(spec)
    tensors = {name: torch.from_numpy(array) for name, array in feeds.items()}
    image, mask, meta = tensors["seg_image"], tensors["mask"], tensors["meta"]
    calls = {"segmenter": lambda: seg(image),
             "classifier": lambda: cls(tensors["cls_image"], mask, meta),
             "pair": lambda: cls(tensors["cls_image"], seg(image), meta)}
    with torch.inference_mode():
        return _timed(calls[spec["model"]], spec)


def measure_ort(spec: dict[str, Any], feeds: dict[str, np.ndarray]) -> list[float]:
    cleanup: list[Callable[[], Any]] = []
    try:
        return _timed(ort_call(spec, feeds, cleanup), spec)
    finally:
        for close in reversed(cleanup):
            close()


def _timed(call: Callable[[], Any], spec: dict[str, Any]) -> list[float]:
    return time_calls(call, items=spec["batch"], warmup=spec["warmup"], repeats=spec["repeats"],
                      min_seconds=spec["min_seconds"])


def export_paper(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the paper-size models, save their weights and export both to ONNX."""
    import torch

    from training.export import export_onnx

    cfg, folder, meta_dim = spec["config"], Path(spec["dir"]), spec["meta_dim"]
    seg, cls = build_paper_models(cfg, meta_dim)
    size = cfg["size"]
    image, mask, meta = torch.zeros(2, 3, size, size), torch.zeros(2, 1, size, size), torch.zeros(2, meta_dim)
    export_onnx(seg, {"image": image}, "mask", folder / "segmenter.onnx", cfg["opset"])
    export_onnx(cls, {"image": image, "mask": mask, "meta": meta}, "logits", folder / "classifier.onnx",
                cfg["opset"])
    torch.save(seg.state_dict(), folder / "segmenter.pt")
    torch.save(cls.state_dict(), folder / "classifier.pt")
    parameters = {"segmenter": sum(p.numel() for p in seg.parameters()),
                  "classifier": sum(p.numel() for p in cls.parameters())}
    return {"dir": str(folder), "parameters": parameters}


def worker_main(spec: dict[str, Any]) -> None:
    if spec["job"] == "export":
        worker_result(export_paper(spec))
        return
    feeds = make_inputs(spec["batch"], tuple(spec["size"]), spec["meta_dim"])
    measure = measure_ort if spec["engine"] == "onnxruntime" else measure_torch
    worker_result({"rates": measure(spec, feeds)})


# -- parent side ----------------------------------------------------------------------------------

def bundle_set(bundle: Path, run_dir: Path | None) -> ModelSet:
    """The bundle's ONNX files, and its training checkpoints for PyTorch when they exist."""
    from screening.manifest import load_manifest

    manifest = load_manifest(bundle)
    run_dir = run_dir or REPO / "runs" / bundle.name
    checkpoints = {role: run_dir / role / "best.pt" for role in ("segmenter", "classifier")}
    missing = [str(p) for p in checkpoints.values() if not p.is_file()]
    torch_source = None if missing else {"kind": "checkpoints", **{k: str(v) for k, v in checkpoints.items()}}
    note = f"missing {', '.join(missing)}" if missing else f"checkpoints in {run_dir}"
    return ModelSet(name=f"bundle {manifest.tag}",
                    onnx={"segmenter": str(bundle / manifest.segmenter.file),
                          "classifier": str(bundle / manifest.classifier.file)},
                    torch=torch_source, torch_note=note, size=tuple(manifest.input_size),
                    meta_dim=manifest.metadata.dim)


def paper_set(args: argparse.Namespace, folder: Path) -> tuple[ModelSet, dict[str, Any]]:
    """Export the paper-size models into ``folder`` (in a worker, so the parent stays torch-free)."""
    from screening.metadata import DEFAULT_VOCABULARY

    cfg = PaperConfig(image_backbone=args.paper_image_backbone, seg_encoder=args.paper_seg_encoder,
                      decoder_channels=list(args.paper_decoder_channels), size=args.paper_size,
                      d_model=args.paper_d_model)
    meta_dim = DEFAULT_VOCABULARY.dim
    exported = run_worker(Path(__file__), {"job": "export", "config": vars(cfg), "dir": str(folder),
                                           "meta_dim": meta_dim}, timeout=args.timeout)
    name = f"paper U-Net {cfg.seg_encoder} + fusion 2x{cfg.image_backbone} @{cfg.size}"
    roles = ("segmenter", "classifier")
    model_set = ModelSet(name=name, onnx={role: str(folder / f"{role}.onnx") for role in roles},
                         torch={"kind": "paper", "config": vars(cfg),
                                **{role: str(folder / f"{role}.pt") for role in roles}},
                         torch_note="random weights, same as the ONNX export",
                         size=(cfg.size, cfg.size), meta_dim=meta_dim)
    return model_set, {"config": vars(cfg), "parameters": exported["parameters"]}


def columns(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(engine, variant) measured for every row; PyTorch has one variant."""
    measured = []
    if "pytorch" in args.engines:
        measured.append(("pytorch", "eager"))
    if "onnxruntime" in args.engines:
        measured += [("onnxruntime", variant) for variant in args.ort_variant]
    return measured


def measure_set(model_set: ModelSet, args: argparse.Namespace, threads: int,
                figures: dict[tuple, list[float]], errors: dict[tuple, str]) -> None:
    """Run every (model, batch, engine, variant) of one set once, adding rates to ``figures``."""
    for model in args.models:
        for batch in args.batch_sizes:
            for engine, variant in columns(args):
                key = (model_set.name, model, batch, engine, variant)
                if engine == "pytorch" and model_set.torch is None:
                    errors[key] = f"no PyTorch models: {model_set.torch_note}"
                    continue
                if VARIANTS.get(variant, {}).get("fused") and model != "pair":
                    continue
                spec = {"job": "measure", "engine": engine, "variant": variant, "model": model,
                        "batch": batch, "size": list(model_set.size), "meta_dim": model_set.meta_dim,
                        "onnx": model_set.onnx, "torch": model_set.torch, "threads": threads,
                        "repeats": args.repeats, "min_seconds": args.min_seconds, "warmup": args.warmup}
                try:
                    result = run_worker(Path(__file__), spec, timeout=args.timeout)
                    figures.setdefault(key, []).extend(result["rates"])
                except BenchError as exc:
                    errors[key] = str(exc)
                    print(f"warning: {model_set.name} {model} batch {batch} {engine} {variant}: {exc}",
                          file=sys.stderr)


def report_rows(sets: list[ModelSet], args: argparse.Namespace, figures: dict[tuple, list[float]],
                errors: dict[tuple, str]) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """Table header and rows, and the JSON entries: one per (set, model, batch)."""
    measured = columns(args)
    headers = ["models", "model", "batch", *(f"{e} {v}" if e == "onnxruntime" else e for e, v in measured)]
    baseline_ort = next((c for c in measured if c[0] == "onnxruntime"), None)
    if baseline_ort and ("pytorch", "eager") in measured:
        headers.append("ORT/PyTorch")
    rows, entries = [], []
    for model_set in sets:
        for model in args.models:
            for batch in args.batch_sizes:
                stats = {f"{e}/{v}": spread(figures.get((model_set.name, model, batch, e, v), []))
                         for e, v in measured}
                problems = {f"{e}/{v}": errors[(model_set.name, model, batch, e, v)]
                            for e, v in measured if (model_set.name, model, batch, e, v) in errors}
                medians = [stats[f"{e}/{v}"]["median"] for e, v in measured]
                row = [model_set.name, model, str(batch), *(cell(m) for m in medians)]
                speedup = None
                if len(headers) > len(row):
                    speedup = ratio(stats[f"onnxruntime/{baseline_ort[1]}"]["median"],
                                    stats["pytorch/eager"]["median"])
                    row.append(cell(speedup, 2))
                rows.append(row)
                entries.append({"models": model_set.name, "model": model, "batch": batch,
                                "images_per_s": stats, "ort_over_pytorch": speedup, "errors": problems})
    return headers, rows, entries


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The command-line settings, JSON-ready."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(json.loads(args.worker))
        return 0
    from screening.backends.onnxrt import physical_cores

    machine = machine_info()
    warn_if_busy(machine)
    threads = args.threads or physical_cores()
    figures: dict[tuple, list[float]] = {}
    errors: dict[tuple, str] = {}
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        sets = []
        if "bundle" in args.sets:
            bundle = args.bundle or default_bundle()
            sets.append(bundle_set(bundle, args.run_dir))
            details["bundle"] = {"dir": str(bundle), "pytorch": sets[-1].torch_note}
        if "paper" in args.sets:
            model_set, details["paper"] = paper_set(args, Path(tmp))
            sets.append(model_set)
        for _ in range(args.rounds):
            for model_set in sets:
                measure_set(model_set, args, threads, figures, errors)
    headers, rows, entries = report_rows(sets, args, figures, errors)
    print(f"images/s, median of {args.repeats} x {args.rounds} runs, {threads} threads per engine")
    print(format_table(headers, rows))
    write_json(args.out, {"benchmark": "model_throughput", "machine": machine, "threads": threads,
                          "settings": settings(args),
                          "ort_variants": {v: VARIANTS[v] for v in args.ort_variant},
                          "sets": details, "results": entries})
    return 1 if errors and any("no PyTorch models" not in e for e in errors.values()) else 0


if __name__ == "__main__":
    run_main(main)
