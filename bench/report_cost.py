"""Cost of the HTML report inside ``screen folder --report``: its share of the run, and MB per 1,000 images.

One in-process ``screen folder --report`` run over N dev images, with the report's three pieces
timed where they run: the thumbnail (made in the decoder threads from the pixels already
decoded), recording each image's view (JPEG encode + file, outline, attention JSON) and the final
page build. Their sum over the run's wall time minus that sum is the report's cost relative to the
same run without it (an upper bound: the thumbnails run in decoder threads beside the models).
With ``--ab`` the run is also repeated without ``--report`` for an end-to-end comparison.

    python bench/report_cost.py                      # 1,000 images of ../shared/data/ham10000_dev
    python bench/report_cost.py --n 200 --ab
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from harness import (SHARED_DATA, BenchError, default_bundle, default_out, machine_info, read_dataset,
                     replicate, run_main, warn_if_busy, write_json)

GOAL_SHARE = 0.10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "ham10000_dev",
                        help="data set with labels.csv (default: ../shared/data/ham10000_dev)")
    parser.add_argument("--n", type=int, default=1000, help="images (default: 1000)")
    parser.add_argument("--bundle", type=Path, default=default_bundle(), help="model bundle")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--ab", action="store_true", help="also time the same run without --report")
    parser.add_argument("--out", type=Path, default=default_out("report_cost"),
                        help="JSON report (default: bench/results/report_cost.json)")
    return parser.parse_args(argv)


class Stopwatch:
    """Seconds spent inside wrapped functions, summed over threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def wrap(self, name: str, function: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
                    self.calls[name] = self.calls.get(name, 0) + 1
        return timed


def screen(images: Path, meta: Path, bundle: Path, out: Path, batch_size: int, report: Path | None) -> float:
    from screening.progress import Reporter
    from screening.session import FolderRequest, screen_folder

    start = time.perf_counter()
    screen_folder(FolderRequest(images_dir=images, meta_csv=meta, output=out, bundle_dir=bundle,
                                backend="onnxruntime", batch_size=batch_size, report=report),
                  Reporter(quiet=True))
    return time.perf_counter() - start


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import screening.pipeline as pipeline
    import screening.report.build as build
    from screening.report.views import ViewWriter

    machine = machine_info()
    warn_if_busy(machine)
    watch = Stopwatch()
    # Patched where they are looked up, so the run calls the timed versions.
    pipeline.thumbnail = watch.wrap("thumbnail", pipeline.thumbnail)
    ViewWriter.add = watch.wrap("record_view", ViewWriter.add)
    build.build_report = watch.wrap("build_page", build.build_report)
    with tempfile.TemporaryDirectory(prefix="report_cost_") as tmp:
        images, meta = replicate(read_dataset(args.data)[:args.n], args.n, Path(tmp))
        report = Path(tmp) / "report.html"
        wall = screen(images, meta, args.bundle, Path(tmp) / "results.csv", args.batch_size, report)
        report_s = sum(watch.seconds.values())
        result: dict[str, Any] = {
            "images": args.n, "bundle": str(args.bundle), "machine": machine, "run_with_report_s": round(wall, 2),
            "report_parts_s": {k: round(v, 3) for k, v in watch.seconds.items()},
            "report_s": round(report_s, 3),
            "report_share_of_run": round(report_s / (wall - report_s), 4),
            "report_ms_per_image": round(1000 * report_s / args.n, 3),
            "html_mb": round(report.stat().st_size / 1e6, 3),
            "assets_mb": round(folder_mb(report.with_name("report_files")), 3),
        }
        result["mb_per_1000_images"] = round((result["html_mb"] + result["assets_mb"]) * 1000 / args.n, 2)
        if args.ab:
            result["run_without_report_s"] = round(
                screen(images, meta, args.bundle, Path(tmp) / "plain.csv", args.batch_size, None), 2)
            result["ab_share"] = round(wall / result["run_without_report_s"] - 1, 4)
    write_json(args.out, result)
    print(f"{args.n} images, screen folder --report: {wall:.1f} s")
    for name, seconds in watch.seconds.items():
        print(f"  {name:<12} {seconds:7.2f} s  ({1000 * seconds / max(1, watch.calls[name]):.2f} ms per call, "
              f"{watch.calls[name]} calls)")
    print(f"report: {report_s:.2f} s = {100 * result['report_share_of_run']:.1f} % of the run without it "
          f"(goal <= {100 * GOAL_SHARE:.0f} %), {result['report_ms_per_image']:.2f} ms per image")
    print(f"size: {result['html_mb']:.2f} MB HTML + {result['assets_mb']:.2f} MB pictures = "
          f"{result['mb_per_1000_images']:.2f} MB per 1,000 images")
    if args.ab:
        print(f"A/B: without --report {result['run_without_report_s']:.1f} s; with it "
              f"{100 * result['ab_share']:+.1f} % (noisy on a shared machine)")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
