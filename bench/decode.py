"""Decode: full decode + resize vs reduced-size JPEG decode + resize, per full-resolution image.

Both paths are screening's own (``screening.images.decode_image`` then
``screening.preprocess.resize_rgb``): the full path asks for the image's own size, so the
decoder cannot reduce; the reduced path asks for the model's input size, as ``screen folder``
does. Reported per image: milliseconds per image (median of ``--repeats``, the two paths
interleaved), the speed-up, and the largest and mean absolute pixel difference of the two
model-size results (0..255).

    python bench/decode.py                                   # ../shared/data/isic_fullres, 224 px
    python bench/decode.py --images some/folder --size 160 --repeats 20
    python bench/decode.py --cv-threads 1 --clock cpu   # core-ms per image, even on a busy machine
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from harness import (SHARED_DATA, BenchError, cell, default_out, format_table, machine_info, warn_if_busy,
                     run_main, write_json)
from screening.image_header import read_header
from screening.images import IMAGE_SUFFIXES, decode_image
from screening.preprocess import resize_rgb

QUARTER_TURNS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=SHARED_DATA / "isic_fullres" / "images",
                        help="folder of images (default: ../shared/data/isic_fullres/images)")
    parser.add_argument("--size", type=int, default=224, help="model input size in px (default: 224)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed decodes per image and path (default: 7)")
    parser.add_argument("--min-width", type=int, default=1500,
                        help="the speed-up goal applies to images at least this wide (default: 1500)")
    parser.add_argument("--cv-threads", type=int, default=None,
                        help="cv2.setNumThreads (default: OpenCV's own, as screen folder runs)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time; cpu: this thread's CPU time, i.e. core-ms per image "
                             "with --cv-threads 1, unaffected by other load (default: wall)")
    parser.add_argument("--out", type=Path, default=default_out("decode"),
                        help="JSON report (default: bench/results/decode.json)")
    return parser.parse_args(argv)


def model_input(data: bytes, min_size: tuple[int, int], size: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Decode asking for at least ``min_size``, resize to ``size``; returns pixels and the reduction."""
    decoded = decode_image(data, min_size)
    return resize_rgb(decoded.rgb, size), decoded.reduced


def measure_image(path: Path, size: int, repeats: int, clock=time.perf_counter) -> dict[str, Any]:
    """Time both paths on one image (with ``clock``, in seconds) and compare their model-size results."""
    data = path.read_bytes()
    header = read_header(data)
    turned = header.orientation in QUARTER_TURNS
    upright = (header.width, header.height) if turned else (header.height, header.width)
    target = (size, size)
    paths = {"full": upright, "reduced": target}
    times: dict[str, list[float]] = {name: [] for name in paths}
    results: dict[str, tuple[np.ndarray, int]] = {}
    for _ in range(repeats):
        for name, min_size in paths.items():
            start = clock()
            results[name] = model_input(data, min_size, target)
            times[name].append(clock() - start)
    full_ms = statistics.median(times["full"]) * 1e3
    reduced_ms = statistics.median(times["reduced"]) * 1e3
    difference = np.abs(results["full"][0].astype(np.int16) - results["reduced"][0].astype(np.int16))
    return {"image": path.name, "width": header.width, "height": header.height, "bytes": len(data),
            "reduction": results["reduced"][1], "full_ms": full_ms, "reduced_ms": reduced_ms,
            "speedup": full_ms / reduced_ms if reduced_ms > 0 else None,
            "max_abs_diff": int(difference.max()), "mean_abs_diff": float(difference.mean()),
            "full_ms_runs": times["full"], "reduced_ms_runs": times["reduced"]}


def geometric_mean(values: list[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def summary(entries: list[dict[str, Any]], min_width: int) -> dict[str, Any]:
    """Speed-ups over all images and over the wide ones the goal is about."""
    wide = [e for e in entries if max(e["width"], e["height"]) >= min_width]
    return {
        "images": len(entries), "wide_images": len(wide), "min_width": min_width,
        "speedup_geomean_all": geometric_mean([e["speedup"] for e in entries if e["speedup"]]),
        "speedup_geomean_wide": geometric_mean([e["speedup"] for e in wide if e["speedup"]]),
        "speedup_min_wide": min((e["speedup"] for e in wide if e["speedup"]), default=None),
        "max_abs_diff": max((e["max_abs_diff"] for e in entries), default=None),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cv_threads is not None:
        cv2.setNumThreads(args.cv_threads)
    if not args.images.is_dir():
        raise BenchError(f"images folder not found: {args.images}")
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BenchError(f"no images in {args.images}")
    machine = machine_info()
    warn_if_busy(machine)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    entries = [measure_image(path, args.size, args.repeats, clock) for path in files]
    rows = [[e["image"], f"{e['width']}x{e['height']}", f"1/{e['reduction']}", cell(e["full_ms"], 2),
             cell(e["reduced_ms"], 2), cell(e["speedup"], 2), e["max_abs_diff"], cell(e["mean_abs_diff"], 2)]
            for e in entries]
    totals = summary(entries, args.min_width)
    print(f"{'CPU ' if args.clock == 'cpu' else ''}ms per image to a {args.size}x{args.size} model input, "
          f"median of {args.repeats}")
    print(format_table(["image", "size", "decode", "full ms", "reduced ms", "speed-up", "max |diff|",
                        "mean |diff|"], rows))
    print(f"speed-up, geometric mean: {cell(totals['speedup_geomean_all'], 2)} over all images, "
          f"{cell(totals['speedup_geomean_wide'], 2)} over the {totals['wide_images']} images >= "
          f"{args.min_width} px (lowest {cell(totals['speedup_min_wide'], 2)}); "
          f"largest pixel difference {totals['max_abs_diff']}")
    write_json(args.out, {"benchmark": "decode", "machine": machine, "opencv": cv2.__version__,
                          "cv_threads": cv2.getNumThreads(),
                          "settings": {"images": str(args.images), "size": args.size,
                                       "repeats": args.repeats, "clock": args.clock},
                          "summary": totals, "results": entries})
    return 0


if __name__ == "__main__":
    run_main(main)
