"""Decode budgets: what decoding in child processes (time limit per image) costs end to end.

Screens the same images with the bundle on ONNX Runtime two ways, alternately, each run in a
fresh worker process: decoding in the decoder threads themselves (no time limit, as before the
budgets) and decoding in one child process per thread (``screening.decode_pool``, the
default). Reports images/s of the screening stream (decode, models, postprocess; model loading
excluded, the decoder processes' start-up included) and the peak RSS
and PSS of the whole process tree (parent plus decoder processes, sampled every 50 ms).

    python bench/decode_budget.py                         # 1,000 ham10000_dev images, 3 runs each
    python bench/decode_budget.py --count 300 --repeats 1 --workers 2
    python bench/decode_budget.py --decode-only               # the decode stage alone, no models
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import (add_bundle_and_source,
                     cell, default_bundle, default_out, format_table, machine_info, read_dataset,
                     replicate, run_main, run_worker, spread, warn_if_busy, worker_result, write_json)

MODES = ("threads", "processes")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bundle_and_source(parser)
    parser.add_argument("--count", type=int, default=1000, help="images (default: 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode, alternating (default: 3)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="decoders (default: one per CPU)")
    parser.add_argument("--out", type=Path, default=default_out("decode_budget"),
                        help="JSON report (default: bench/results/decode_budget.json)")
    parser.add_argument("--decode-only", action="store_true",
                        help="time reading + decoding + resizing alone (no models): the per-image "
                             "cost of the decoder processes, without the models' noise")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _tree_memory_bytes(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` plus its children (the decoder processes), from /proc.

    RSS counts the shared libraries (OpenCV, numpy) once per process; PSS shares them out, so
    the PSS sum is the memory the tree really takes.
    """
    rss = pss = 0
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                pids += [int(child) for child in fh.read().split()]
    except OSError:
        pass
    for each in pids:
        try:
            with open(f"/proc/{each}/smaps_rollup") as fh:
                fields = {line.split(":")[0]: int(line.split()[1]) for line in fh.read().splitlines()[1:]}
        except (OSError, ValueError, IndexError):
            continue
        rss += fields.get("Rss", 0) * 1024
        pss += fields.get("Pss", 0) * 1024
    return rss, pss


class _PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_rss = self.peak_pss = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            rss, pss = _tree_memory_bytes(os.getpid())
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)


def worker(spec: dict) -> None:
    """One timed screening stream in this fresh process."""
    from screening.backends import open_backend
    from screening.decode_pool import DEFAULT_TIME_BUDGET_S, DecodeLimits
    from screening.images import DEFAULT_MAX_DECODE_BYTES, discover_images
    from screening.manifest import load_manifest
    from screening.patients import read_patients
    from screening.pipeline import PipelineOptions, plan_jobs, screen_jobs

    bundle, root = Path(spec["bundle"]), Path(spec["images"])
    manifest = load_manifest(bundle)
    discovery = discover_images(root)
    table = read_patients(Path(spec["meta"]), images=discovery.images)
    jobs = plan_jobs(discovery.images, table, manifest.metadata)
    limits = DecodeLimits(DEFAULT_TIME_BUDGET_S, DEFAULT_MAX_DECODE_BYTES) if spec["mode"] == "processes" else None
    if spec.get("decode_only"):
        decode_worker(spec, root, jobs, manifest.input_size, limits)
        return
    options = PipelineOptions(batch_size=spec["batch_size"], workers=spec["workers"], limits=limits)
    backend, _ = open_backend("onnxruntime", bundle, manifest, batch_size=spec["batch_size"])
    sampler = _PeakSampler()
    sampler.start()
    with backend:
        started = time.monotonic()
        statuses: dict[str, int] = {}
        for batch in screen_jobs(jobs, root, backend, options):
            for outcome in batch:
                statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        elapsed = time.monotonic() - started
    sampler.stopped.set()
    sampler.join()
    worker_result({"images_per_s": len(jobs) / elapsed, "elapsed_s": elapsed, "status": statuses,
                   "peak_tree_rss_mib": sampler.peak_rss / 2**20, "peak_tree_pss_mib": sampler.peak_pss / 2**20})


def decode_worker(spec: dict, root: Path, jobs: list, input_size: tuple[int, int], limits) -> None:
    """Decode every image (read, decode, resize) through the pipeline's decode stage only."""
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import nullcontext

    from screening.decode_pool import DecodePool
    from screening.images import load_image
    from screening.pipeline import decode_ahead, plan_batches

    sampler = _PeakSampler()
    sampler.start()
    with ThreadPoolExecutor(spec["workers"]) as pool, (DecodePool(spec["workers"], limits) if limits
                                                       else nullcontext()) as decoders:
        load = decoders.load if decoders is not None else load_image
        started = time.monotonic()
        count = sum(len(batch) for batch in decode_ahead(plan_batches(jobs, spec["batch_size"]), root,
                                                         input_size, pool, load=load))
        elapsed = time.monotonic() - started
    sampler.stopped.set()
    sampler.join()
    worker_result({"images_per_s": count / elapsed, "elapsed_s": elapsed, "status": {},
                   "ms_per_image": 1000 * elapsed / count,
                   "peak_tree_rss_mib": sampler.peak_rss / 2**20, "peak_tree_pss_mib": sampler.peak_pss / 2**20})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    machine = machine_info()
    warn_if_busy(machine)
    bundle = args.bundle or default_bundle()
    workers = args.workers or len(os.sched_getaffinity(0))
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="bench-decode-budget-") as tmp:
        images, meta = replicate(read_dataset(args.source), args.count, Path(tmp))
        for index in range(args.repeats):
            order = MODES if index % 2 == 0 else MODES[::-1]  # alternate, so drift hits both
            for mode in order:
                spec = {"mode": mode, "bundle": str(bundle), "images": str(images), "meta": str(meta),
                        "batch_size": args.batch_size, "workers": workers, "decode_only": args.decode_only}
                result = run_worker(Path(__file__), spec, timeout=3600)
                runs[mode].append(result)
                print(f"  {mode:<9} run {index + 1}: {result['images_per_s']:.1f} images/s, peak tree RSS "
                      f"{result['peak_tree_rss_mib']:.0f} MiB, PSS {result['peak_tree_pss_mib']:.0f} MiB", flush=True)
    summary = {mode: {key: spread(r[key] for r in results)
                      for key in ("images_per_s", "peak_tree_rss_mib", "peak_tree_pss_mib")}
               for mode, results in runs.items()}
    base = summary["threads"]["images_per_s"]["median"]
    change = summary["processes"]["images_per_s"]["median"] / base - 1.0
    rows = [[mode, cell(summary[mode]["images_per_s"]["median"]), cell(summary[mode]["peak_tree_rss_mib"]["median"], 0),
             cell(summary[mode]["peak_tree_pss_mib"]["median"], 0)] for mode in MODES]
    print(format_table(["decoding in", "images/s (median)", "peak tree RSS MiB", "peak tree PSS MiB"], rows))
    what = "decode stage only" if args.decode_only else "end to end"
    print(f"decoder processes vs threads ({what}): {100 * change:+.1f} % images/s "
          f"({args.count} images, {workers} decoders, batch {args.batch_size}, {args.repeats} runs each)")
    write_json(args.out, {"machine": machine, "bundle": str(bundle), "count": args.count, "workers": workers,
                          "decode_only": args.decode_only,
                          "batch_size": args.batch_size, "summary": summary, "change": change, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    run_main(main)
