"""Memory: peak RSS of ``screen folder`` as the number of images grows (1,000 vs 10,000 by default).

The images are hard links to a data set's images (cycled to each count) in a temporary
folder, with a generated patients CSV; each count runs ``screen folder --backend onnxruntime``
in a fresh child process whose peak RSS comes from ``wait4``. Growth is relative to the
smallest count; the goal is at most 10 % from 1,000 to 10,000 images.

    python bench/memory.py                                   # ham10000_dev images, 1000 and 10000
    python bench/memory.py --counts 1000 5000 10000 --batch-size 32
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import (add_bundle_and_source,
                     BenchError, cell, default_bundle, default_out, format_table, machine_info,
                     read_dataset, replicate, run_screen, spread, run_main, warn_if_busy, write_json)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bundle_and_source(parser)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="decoder threads (default: screen's)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per count (default: 1)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds per run")
    parser.add_argument("--out", type=Path, default=default_out("memory"),
                        help="JSON report (default: bench/results/memory.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    warn_if_busy(machine)
    bundle = args.bundle or default_bundle()
    source = read_dataset(args.source)
    entries = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for count in sorted(args.counts):
            work = Path(tmp) / str(count)
            images, meta = replicate(source, count, work)
            runs = [run_screen(images, meta, bundle, work / f"run{index}.csv", batch_size=args.batch_size,
                               workers=args.workers, timeout=args.timeout) for index in range(args.repeats)]
            entries.append({"images": count, "peak_rss_mib": spread(r.peak_rss_mib for r in runs),
                            "images_per_s": spread(r.summary["images_per_s"] for r in runs),
                            "runs": [{"peak_rss_mib": round(r.peak_rss_mib, 1), "wall_s": round(r.wall_s, 2),
                                      "status": r.summary["status"]} for r in runs]})
    base = entries[0]["peak_rss_mib"]["median"]
    rows = []
    for entry in entries:
        rss = entry["peak_rss_mib"]["median"]
        entry["growth_vs_first"] = rss / base - 1.0
        rows.append([entry["images"], cell(rss), f"{100 * entry['growth_vs_first']:+.1f} %",
                     cell(entry["images_per_s"]["median"])])
    print(f"bundle {bundle}, batch {args.batch_size}; peak RSS of screen folder (median of {args.repeats})")
    print(format_table(["images", "peak RSS MiB", "vs first", "images/s"], rows))
    write_json(args.out, {"benchmark": "memory", "machine": machine, "bundle": str(bundle),
                          "settings": {"source": str(args.source), "counts": sorted(args.counts),
                                       "batch_size": args.batch_size, "workers": args.workers,
                                       "repeats": args.repeats},
                          "results": entries})
    return 0


if __name__ == "__main__":
    run_main(main)
