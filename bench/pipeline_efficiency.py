"""Pipeline efficiency: ``screen folder`` images/s divided by the bundle's pure model images/s.

For each data set (a ../shared/data folder with ``labels.csv``, its images hard-linked into a
temporary folder and repeated to the requested count) and each setting (batch size, decoder
threads, ONNX Runtime session variant):

- end to end: ``screen folder --backend onnxruntime`` in a child process, images/s from the
  summary JSON it writes (validation, decoding, metadata, journal and CSV included);
- model only: segmenter then classifier on ONNX Runtime, as ``screen folder`` opens them, at the
  same batch size, in a separate worker process (``bench/model_throughput.py``'s worker);
- efficiency = end-to-end / model-only. 1.0 means everything else hides behind inference.
- steady efficiency: the same with the run's fixed cost (bundle check, session creation)
  taken out: a second, small run of ``2 x batch`` images gives it, and the steady rate is
  ``(N - n_small) / (elapsed_N - elapsed_small)``. This is the figure that says whether
  decoding, metadata, journaling and CSV writing hide behind inference.

    python bench/pipeline_efficiency.py                     # ham10000_dev x1000, isic_fullres x300
    python bench/pipeline_efficiency.py --dataset ../shared/data/ham10000_dev:0 --batch-sizes 8 32
    python bench/pipeline_efficiency.py --workers 1 2 --ort-variant runtime no-spin spin-stop
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import model_throughput
from harness import (SHARED_DATA, BenchError, cell, default_bundle, default_out, format_table, machine_info,
                     ratio, read_dataset, replicate, run_screen, run_worker, spread, run_main, warn_if_busy, write_json)
from ort_variants import SESSION_VARIANTS

DEFAULT_DATASETS = [f"{SHARED_DATA / 'ham10000_dev'}:1000", f"{SHARED_DATA / 'isic_fullres'}:300"]


def dataset_spec(text: str) -> tuple[Path, int]:
    """'FOLDER[:COUNT]' -> (folder, count); count 0 (the default) means each image once."""
    folder, _, count = text.rpartition(":")
    if folder and count.isdigit():
        return Path(folder), int(count)
    return Path(text), 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None,
                        help="bundle folder (default: engines/starter, else engines/sample)")
    parser.add_argument("--dataset", type=dataset_spec, nargs="+", default=None, metavar="FOLDER[:COUNT]",
                        help="folders with labels.csv (file, age, sex, site) and how many files to "
                             "screen, cycling over its images (default: ham10000_dev:1000 isic_fullres:300)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8])
    parser.add_argument("--workers", type=int, nargs="+", default=[0],
                        help="decoder threads for screen folder, one figure each (default: 0 = its own "
                             "default, one per CPU)")
    parser.add_argument("--ort-variant", nargs="+", choices=SESSION_VARIANTS, default=["runtime"],
                        help="ONNX Runtime session settings, for screen folder and the models alike "
                             "(bench/ort_variants.py; default: runtime, screening's own)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="screen folder runs, and timed model runs, per figure (default: 3)")
    parser.add_argument("--min-seconds", type=float, default=5.0, help="shortest timed model run")
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime threads of the model-only figure (default: physical cores, "
                             "as screen folder)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per child process")
    parser.add_argument("--out", type=Path, default=default_out("pipeline_efficiency"),
                        help="JSON report (default: bench/results/pipeline_efficiency.json)")
    args = parser.parse_args(argv)
    if args.dataset is None:
        args.dataset = [dataset_spec(text) for text in DEFAULT_DATASETS]
    return args


@dataclass(frozen=True)
class Setting:
    """One screen folder configuration of the comparison."""

    batch: int
    workers: int  # decoder threads; 0: screen folder's default
    variant: str  # ONNX Runtime session settings


def model_rate(bundle: Path, setting: Setting, threads: int, args: argparse.Namespace) -> list[float]:
    """Images/s of the bundle's two models alone, chained as screen folder chains them."""
    model_set = model_throughput.bundle_set(bundle, None)
    spec = {"job": "measure", "engine": "onnxruntime", "variant": setting.variant, "model": "pair",
            "batch": setting.batch, "size": list(model_set.size), "meta_dim": model_set.meta_dim,
            "onnx": model_set.onnx, "torch": None, "threads": threads, "repeats": args.repeats,
            "min_seconds": args.min_seconds, "warmup": 2}
    return run_worker(Path(model_throughput.__file__), spec, timeout=args.timeout)["rates"]


def screen_runs(images: Path, meta: Path, bundle: Path, setting: Setting, folder: Path, tag: str,
                args: argparse.Namespace) -> list[dict[str, Any]]:
    """``--repeats`` fresh screen folder runs (each with its own output, so no journal is reused)."""
    runs = []
    for index in range(args.repeats):
        output = folder / f"{tag}_b{setting.batch}_w{setting.workers}_{setting.variant}_{index}.csv"
        run = run_screen(images, meta, bundle, output, batch_size=setting.batch,
                         workers=setting.workers or None, ort_variant=setting.variant, timeout=args.timeout)
        runs.append({"images_per_s": run.summary["images_per_s"], "elapsed_s": run.summary["elapsed_s"],
                     "wall_s": round(run.wall_s, 3), "peak_rss_mib": round(run.peak_rss_mib, 1),
                     "images": run.summary["images"], "status": run.summary["status"],
                     "backend": run.summary["backend"]})
    return runs


def steady_rates(full: list[dict[str, Any]], small: list[dict[str, Any]]) -> list[float]:
    """Images/s without the fixed cost of a run, from paired full and small runs."""
    rates = []
    for big, little in zip(full, small):
        seconds = big["elapsed_s"] - little["elapsed_s"]
        if seconds > 0:
            rates.append((big["images"] - little["images"]) / seconds)
    return rates


def settings(args: argparse.Namespace) -> list[Setting]:
    return [Setting(batch, workers, variant) for batch in args.batch_sizes for workers in args.workers
            for variant in args.ort_variant]


def measure_dataset(folder: Path, count: int, work: Path, bundle: Path, models: dict[Setting, dict[str, Any]],
                    args: argparse.Namespace) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """Table rows and JSON entries of one data set in every setting."""
    source = read_dataset(folder)
    images, meta = replicate(source, count, work / "full")
    small_sets = {batch: replicate(source, 2 * batch, work / f"small{batch}") for batch in args.batch_sizes}
    rows, entries = [], []
    for setting in settings(args):
        small_images, small_meta = small_sets[setting.batch]
        full = screen_runs(images, meta, bundle, setting, work, "full", args)
        small = screen_runs(small_images, small_meta, bundle, setting, work, "small", args)
        pipeline = spread(run["images_per_s"] for run in full)
        steady = spread(steady_rates(full, small))
        model = models[setting]["median"]
        efficiency, steady_efficiency = ratio(pipeline["median"], model), ratio(steady["median"], model)
        rows.append([f"{folder.name} x{full[0]['images']}", setting.batch, setting.workers or "default",
                     setting.variant, cell(pipeline["median"]), cell(steady["median"]), cell(model),
                     cell(efficiency, 2), cell(steady_efficiency, 2)])
        entries.append({"dataset": str(folder), "images": full[0]["images"], "batch": setting.batch,
                        "workers": setting.workers or None, "ort_variant": setting.variant,
                        "pipeline_images_per_s": pipeline, "steady_images_per_s": steady,
                        "model_images_per_s": models[setting], "efficiency": efficiency,
                        "steady_efficiency": steady_efficiency, "runs": full, "small_runs": small})
    return rows, entries


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from screening.backends.onnxrt import physical_cores

    machine = machine_info()
    warn_if_busy(machine)
    bundle = args.bundle or default_bundle()
    threads = args.threads or physical_cores()
    entries, rows = [], []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        # The models alone do not depend on the decoder threads: one figure per batch and variant.
        rates = {(s.batch, s.variant): None for s in settings(args)}
        rates = {key: spread(model_rate(bundle, Setting(key[0], 0, key[1]), threads, args)) for key in rates}
        models = {s: rates[(s.batch, s.variant)] for s in settings(args)}
        for number, (folder, count) in enumerate(args.dataset):
            more_rows, more_entries = measure_dataset(folder, count, Path(tmp) / f"set{number}", bundle,
                                                      models, args)
            rows += more_rows
            entries += more_entries
    print(f"bundle {bundle}; images/s, median of {args.repeats} runs; models only: ONNX Runtime, "
          f"{threads} threads, segmenter + classifier")
    print(format_table(["images", "batch", "workers", "ORT", "screen folder", "steady", "models only",
                        "efficiency", "steady eff."], rows))
    write_json(args.out, {"benchmark": "pipeline_efficiency", "machine": machine, "bundle": str(bundle),
                          "threads": threads,
                          "settings": {"batch_sizes": args.batch_sizes, "workers": args.workers,
                                       "ort_variants": args.ort_variant, "repeats": args.repeats,
                                       "min_seconds": args.min_seconds,
                                       "datasets": [[str(f), c] for f, c in args.dataset]},
                          "results": entries})
    return 0


if __name__ == "__main__":
    run_main(main)
