"""Probe: does screening small lesions zoomed in help a shipped bundle?

The model sees every image squashed to its input size (160 px). A lesion that covers a few per
cent of a full-resolution photograph (median 6 % of the frame in the 800 px ISIC 2017 images,
against 21-28 % in the training sources) is then a few dozen pixels across. This probe crops
the original pixels around such a lesion (the same aspect ratio as the photograph, so the squash
is unchanged) until the lesion covers ``--target`` of the frame, and screens the crop instead.

For every split the lesion masks are read from the classifier's mask cache (the segmenter's
predictions at the input size, as training used them); images whose lesion covers less than
``--below`` of the frame are cropped and written as lossless PNGs, the others linked unchanged,
and the folder is screened by the bundle through ``screen folder``. Results land as
``OUT/<split>/zoom.csv`` with the index's image names, and ``OUT/<split>/mean.csv`` holds the
mean of the zoomed and the plain view's probabilities (a two-view test-time augmentation), for
`bench/paired_compare.py --baseline REPORT/@RESULTS.csv` against the bundle's own report:

    python bench/lesion_zoom_probe.py --index runs/starter2/index.csv --bundle engines/starter \\
        --masks runs/starter2/masks --plain "runs/starter2/report230/@starter@2.3.0.csv" \\
        --out runs/starter2/zoom_probe
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clinic_colour_probe import screened_as_indexed  # noqa: E402
from ensemble_probe import average, read_member  # noqa: E402
from harness import link_or_copy  # noqa: E402
from training.data.dataset import read_rgb  # noqa: E402

# The crop is cut from the photograph's own pixels: no reduced-size JPEG decode.
FULL_SIZE = (1 << 15, 1 << 15)
MIN_SIDE = 160  # the bundles' input size


def zoom_window(mask: np.ndarray, below: float, target: float, margin: float = 1.3) -> tuple[float, float, float] | None:
    """(centre row, centre column, side) of the crop as fractions of the frame, or None to leave
    the image as it is (no lesion found, or a lesion already covering ``below`` of the frame).

    The side makes the lesion cover about ``target`` of the crop, but never cuts into the lesion's
    bounding box (times ``margin``); the window is moved inside the frame, never shrunk by it."""
    lesion = mask > 127
    share = float(lesion.mean())
    if share == 0.0 or share >= below:
        return None
    rows, cols = np.nonzero(lesion)
    height, width = lesion.shape
    top, bottom = rows.min() / height, (rows.max() + 1) / height
    left, right = cols.min() / width, (cols.max() + 1) / width
    side = max(np.sqrt(share / target), margin * (bottom - top), margin * (right - left))
    if side >= 0.95:
        return None
    centre_row = float(np.clip((top + bottom) / 2, side / 2, 1 - side / 2))
    centre_col = float(np.clip((left + right) / 2, side / 2, 1 - side / 2))
    return centre_row, centre_col, float(side)


def crop(image: np.ndarray, window: tuple[float, float, float]) -> np.ndarray:
    """The window of ``image``'s own pixels (its aspect ratio kept)."""
    centre_row, centre_col, side = window
    height, width = image.shape[:2]
    top = int(round((centre_row - side / 2) * height))
    left = int(round((centre_col - side / 2) * width))
    rows, cols = max(1, int(round(side * height))), max(1, int(round(side * width)))
    return image[top:top + rows, left:left + cols]


def at_least(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` enlarged (aspect kept) so that its shorter side is at least ``side`` pixels:
    screening refuses a picture far below its input size, and would enlarge it to 160 px anyway."""
    short = min(image.shape[:2])
    if short >= side:
        return image
    scale = side / short
    size = (max(side, round(image.shape[1] * scale)), max(side, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True, help="the classifier's predicted-mask cache")
    parser.add_argument("--plain", required=True, metavar="REPORT/@RESULTS.csv",
                        help="the bundle's own report of the same splits (the unzoomed view)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--splits", nargs="+", default=["external", "test"])
    parser.add_argument("--below", type=float, default=0.15, help="zoom lesions covering less of the frame")
    parser.add_argument("--target", type=float, default=0.25, help="share of the crop the lesion should cover")
    args = parser.parse_args()
    index = pd.read_csv(args.index, dtype=str, keep_default_na=False)
    record: dict[str, dict] = {}
    for split in args.splits:
        rows = index[index["split"] == split]
        folder = args.out / split / "zoom-images"
        (folder / "images").mkdir(parents=True, exist_ok=True)
        names, zoomed = [], {}
        for row in rows.itertuples():
            mask = cv2.imread(str(args.masks / f"{row.image_id}.png"), cv2.IMREAD_GRAYSCALE)
            window = zoom_window(mask, args.below, args.target)
            if window is None:
                name = f"{row.image_id}{Path(row.image_path).suffix.lower()}"
                if not (folder / "images" / name).exists():
                    link_or_copy(Path(row.image_path), folder / "images" / name)
            else:
                name = f"{row.image_id}.png"
                image = at_least(crop(read_rgb(row.image_path, FULL_SIZE), window), MIN_SIDE)
                cv2.imwrite(str(folder / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                zoomed[row.image_id] = window
            names.append(name)
        pd.DataFrame({"image": names, "patient_id": rows["lesion_id"], "age": rows["age"], "sex": rows["sex"],
                      "site": rows["site"]}).to_csv(folder / "patients.csv", index=False)
        zoom = screened_as_indexed(folder, rows, args.bundle, f"{split} ({len(zoomed)} zoomed)")
        zoom.to_csv(args.out / split / "zoom.csv", index=False)
        mean = average([zoom.set_index("image"), read_member(args.plain, split)])
        mean.reset_index().to_csv(args.out / split / "mean.csv", index=False)
        sources = rows.set_index("image_id")["source"]
        record[split] = {"zoomed": len(zoomed), "images": len(rows),
                         "zoomed_by_source": {str(k): int(v) for k, v in sources[list(zoomed)].value_counts().items()}}
        print(json.dumps(record[split]))
    (args.out / "zoomed.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
