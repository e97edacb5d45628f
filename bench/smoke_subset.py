"""A fixed subset of an image folder with its metadata rows, optionally repeated under new names, for bench runs.

Takes the first ``--count`` images (sorted by name) of ``--images`` and the rows of ``--meta``
that name them, and writes ``--copies`` copies into ``OUT/images`` (hard links where possible),
the first copy under the original names and the others prefixed ``r1_``, ``r2_``, ...; the
metadata rows follow the names into ``OUT/patients.csv``. ``bench/gpu_smoke.sh`` compares
backends on one copy and times end-to-end runs on several, so start-up does not dominate.

    python bench/smoke_subset.py --images ../shared/data/ham10000_dev/images \
        --meta ../shared/data/ham10000_dev/labels.csv --count 500 --copies 4 --out runs/smoke/e2e
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from pathlib import Path

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
KEY_COLUMNS = ("image", "image_id", "image_name", "isic_id")  # as screening.patients accepts them


def key_column(header: list[str]) -> str:
    lowered = {name.strip().lower(): name for name in header}
    for key in KEY_COLUMNS:
        if key in lowered:
            return lowered[key]
    raise SystemExit(f"error: the metadata CSV has none of the key columns {', '.join(KEY_COLUMNS)}")


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(src, dst)


def make_subset(images: Path, meta: Path, count: int, copies: int, out: Path) -> tuple[int, int]:
    """Write the subset; returns (images written, metadata rows written)."""
    chosen = sorted(p for p in images.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)[:count]
    if not chosen:
        raise SystemExit(f"error: no images in {images}")
    with open(meta, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        key = key_column(header)
        rows = {}
        for row in reader:
            rows.setdefault(Path(row[key].strip()).stem, row)
    (out / "images").mkdir(parents=True, exist_ok=True)
    written = 0
    with open(out / "patients.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for copy in range(copies):
            prefix = f"r{copy}_" if copy else ""
            for path in chosen:
                link_or_copy(path, out / "images" / f"{prefix}{path.name}")
                row = rows.get(path.stem)
                if row is not None:
                    writer.writerow({**row, key: f"{prefix}{path.stem}"})
                    written += 1
    return len(chosen) * copies, written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--meta", type=Path, required=True)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    images, rows = make_subset(args.images, args.meta, args.count, args.copies, args.out)
    print(f"{images} images and {rows} metadata rows in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
