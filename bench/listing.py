"""Listing cost: discover_images, discovery as screen folder does it, and plan_jobs on N tiny files.

What a night pays before its first image is read, on a local disk with the folder warm in the
page cache: the stall bounds of screening.stalled_reads wrap these steps (the listing and the
--out check over the images found run in a watched thread), and must cost next to nothing on a
folder that answers. ``session.discover`` is discover_images plus that --out check. Prints the
minimum and the median of the repeats in milliseconds for each step (the minimum is the figure
to compare on a shared, busy machine).

    python bench/listing.py                 # 10,000 files of 100 bytes
    python bench/listing.py --n 50000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from screening.images import discover_images
from screening.metadata import DEFAULT_VOCABULARY
from screening.patients import read_patients
from screening.pipeline import plan_jobs
from screening.session import FolderRequest, discover


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="files (default: 10000)")
    parser.add_argument("--repeats", type=int, default=15, help="timed passes (default: 15)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        root.mkdir()
        for index in range(args.n):  # 100 files per sub-folder, as a clinic's dated folders
            folder = root / f"day_{index // 100:04d}"
            folder.mkdir(exist_ok=True)
            (folder / f"img_{index:06d}.jpg").write_bytes(b"\xff\xd8" + bytes(98))
        meta = Path(tmp) / "patients.csv"
        meta.write_text("image,age\n" + "".join(f"img_{i:06d}.jpg,40\n" for i in range(args.n)))
        out = Path(tmp) / "results" / "results.csv"
        out.parent.mkdir()
        table = read_patients(meta, images=discover_images(root).images)
        request = FolderRequest(images_dir=root, meta_csv=meta, output=out, bundle_dir=Path(tmp))
        timings: dict[str, list[float]] = {"discover_images": [], "session.discover": [], "plan_jobs": []}
        for _ in range(args.repeats):
            started = time.perf_counter()
            images = discover_images(root).images
            timings["discover_images"].append(time.perf_counter() - started)
            started = time.perf_counter()
            discover(request)
            timings["session.discover"].append(time.perf_counter() - started)
            started = time.perf_counter()
            plan_jobs(images, table, DEFAULT_VOCABULARY)
            timings["plan_jobs"].append(time.perf_counter() - started)
        assert len(images) == args.n
    for step, seconds in timings.items():
        median = statistics.median(seconds) * 1000
        print(f"{step:<18} min {min(seconds) * 1000:7.1f} ms, median {median:7.1f} ms, max "
              f"{max(seconds) * 1000:7.1f} ms for {args.n} files")


if __name__ == "__main__":
    main()
