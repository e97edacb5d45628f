"""Content fingerprint cost: hashing each image's bytes (what ``--resume`` compares) vs a whole run.

Times ``screening.fingerprint.content_digest`` over N images (read + BLAKE2b, files warm in the
page cache, as they are right after a copy or a first run), then ``screen folder`` end to end on
the same images with the bundle. Reported: ms per image for hashing, MB/s, the run's ms per
image, and the hash's share of the run (the goal: under 5 %). The run already includes the hash
(screen folder hashes every image it screens), so the share is an upper bound of the overhead.

    python bench/fingerprint.py                           # 1,000 images of ../shared/data/ham10000_dev
    python bench/fingerprint.py --images DIR --n 200 --skip-run
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import SHARED_DATA, BenchError, default_bundle, default_out, machine_info, run_main, warn_if_busy, write_json
from screening.fingerprint import content_digest
from screening.images import IMAGE_SUFFIXES

GOAL_SHARE = 0.05


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=SHARED_DATA / "ham10000_dev" / "images",
                        help="folder of images (default: ../shared/data/ham10000_dev/images)")
    parser.add_argument("--n", type=int, default=1000, help="images to use (default: 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed hashing passes (default: 5)")
    parser.add_argument("--bundle", type=Path, default=default_bundle(), help="bundle for the run")
    parser.add_argument("--workers", type=int, default=None, help="screen folder --workers")
    parser.add_argument("--skip-run", action="store_true", help="only time the hashing")
    parser.add_argument("--out", type=Path, default=default_out("fingerprint"),
                        help="JSON report (default: bench/results/fingerprint.json)")
    return parser.parse_args(argv)


def pick_images(folder: Path, n: int) -> list[Path]:
    if not folder.is_dir():
        raise BenchError(f"images folder {folder} not found")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    if not images:
        raise BenchError(f"no images in {folder}")
    return images


def time_hashing(images: list[Path], repeats: int) -> dict[str, Any]:
    """Median seconds of one pass hashing every image (one thread, after a warming pass)."""
    for path in images:  # warm the page cache, as after a copy or an earlier run
        content_digest(path)
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for path in images:
            content_digest(path)
        passes.append(time.perf_counter() - start)
    total_bytes = sum(p.stat().st_size for p in images)
    median = statistics.median(passes)
    return {"seconds_per_pass": median, "ms_per_image": 1000 * median / len(images),
            "mb_per_s": total_bytes / median / 1e6, "mean_file_kb": total_bytes / len(images) / 1e3}


def time_run(images: list[Path], bundle: Path, workers: int | None) -> dict[str, Any]:
    """One ``screen folder`` run (library call, quiet) on copies of the images."""
    from screening.progress import Reporter
    from screening.session import FolderRequest, screen_folder

    with tempfile.TemporaryDirectory(prefix="bench_fingerprint_") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for path in images:
            os.link(path, folder / path.name) if _same_device(path, folder) else shutil.copy2(path, folder)
        meta = Path(tmp) / "patients.csv"
        meta.write_text("image\n" + "".join(f"{p.name}\n" for p in images), encoding="utf-8")
        request = FolderRequest(images_dir=folder, meta_csv=meta, output=Path(tmp) / "results.csv",
                                bundle_dir=bundle, backend="onnxruntime", workers=workers)
        start = time.perf_counter()
        summary = screen_folder(request, Reporter(quiet=True))
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "ms_per_image": 1000 * seconds / len(images),
            "images_per_s": len(images) / seconds, "screened": summary.screened}


def _same_device(path: Path, folder: Path) -> bool:
    return path.stat().st_dev == folder.stat().st_dev


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images = pick_images(args.images, args.n)
    machine = machine_info()
    warn_if_busy(machine)
    hashing = time_hashing(images, args.repeats)
    print(f"hash (read + BLAKE2b-128, warm cache, 1 thread): {len(images)} images, "
          f"{hashing['mean_file_kb']:.0f} kB mean, {hashing['ms_per_image']:.3f} ms/image, "
          f"{hashing['mb_per_s']:.0f} MB/s")
    report: dict[str, Any] = {"images": len(images), "folder": str(args.images), "hash": hashing,
                              "machine": machine}
    if not args.skip_run:
        run = time_run(images, args.bundle, args.workers)
        share = hashing["ms_per_image"] / run["ms_per_image"]
        report.update(run=run, hash_share_of_run=share, goal_share=GOAL_SHARE)
        print(f"screen folder (onnxruntime, {args.bundle.name}): {run['images_per_s']:.1f} images/s, "
              f"{run['ms_per_image']:.2f} ms/image")
        print(f"hash share of the run: {100 * share:.2f} % (goal < {100 * GOAL_SHARE:.0f} %)")
    write_json(args.out, report)
    return 0


if __name__ == "__main__":
    run_main(main)
