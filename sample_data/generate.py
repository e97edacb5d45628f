"""Write the synthetic dermoscopy-like sample data set: images, lesion masks, labels.csv, patients.csv.

Run ``make sample-data`` (or ``python sample_data/generate.py [--out DIR]``). The output is a
pure function of ``SEED``: same numpy and OpenCV versions, same bytes.

Every image is 256x192 (W x H), JPEG quality 90: skin-toned background with soft texture and
noise, one darker lesion with a soft edge and mottled pigment, a few thin dark hairs drawn over
it, and the circular vignetting of a dermatoscope. Its mask (PNG, 0/255, same size) is the
lesion alone, without the hairs.

The label rule. Each factor is strong on its own, and no single input determines all four
classes, so a fusion model that sees the image, the mask and the metadata can reach 100 %,
while an image-only model cannot tell bkl from bcc (about 75 % at best on balanced classes):

==========  ===========  ==================================  ==============  ====================
diagnosis   malignant    lesion colour                       shape (mask)    metadata
==========  ===========  ==================================  ==============  ====================
nv          no           dark brown                          round / oval    age 20-69, trunk or
                                                                             extremity
mel         yes          dark brown                          multi-lobed     same as nv
bkl         no           grey-violet                         round / oval    age 40-59, trunk or
                                                                             extremity
bcc         yes          grey-violet                         round / oval    age >= 70, head/neck
==========  ===========  ==================================  ==============  ====================

- Colour splits {nv, mel} from {bkl, bcc}.
- Shape splits nv from mel: round lesions have solidity (area / convex hull area) above 0.95,
  multi-lobed ones have 3 or 4 deep, uneven lobes and solidity below 0.88. Size, position, skin tone, hairs
  and vignetting are drawn from the same distributions for every class.
- Metadata splits bkl from bcc: both the age band and the site group differ, and at most one
  of the two is missing for any bkl or bcc lesion, so the other still decides. For nv and mel
  the metadata carries no signal (same distribution).

Rows with an empty age, sex or site exercise the ``unknown`` path. Some lesions have two images
(same ``lesion_id``, the lesion rotated and rescaled, new skin, hairs and vignetting) and some
patients have several lesions, so splits must be grouped.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SEED = 20250611
WIDTH, HEIGHT = 256, 192
JPEG_QUALITY = 90

CLASSES = ("nv", "mel", "bkl", "bcc")
LABEL_COLUMNS = ("image_id", "file", "mask_file", "diagnosis", "age", "sex", "site", "lesion_id",
                 "patient_id")
PATIENT_COLUMNS = ("image", "patient_id", "age", "sex", "site")

TRUNK_OR_EXTREMITY = ("back", "chest", "abdomen", "upper extremity", "lower extremity")
HEAD_NECK = ("face", "scalp", "ear", "neck")
# Age ranges (inclusive) per class; nv and mel share theirs so age cannot tell them apart.
AGE_RANGE = {"nv": (20, 69), "mel": (20, 69), "bkl": (40, 59), "bcc": (70, 89)}
SITES = {"nv": TRUNK_OR_EXTREMITY, "mel": TRUNK_OR_EXTREMITY, "bkl": TRUNK_OR_EXTREMITY,
         "bcc": HEAD_NECK}
LOBED = frozenset({"mel"})
DARK = frozenset({"nv", "mel"})

# Patients: the diagnoses of their lesions. Most have one lesion; a few have several, with
# ages compatible with every one of their lesions' rules. Sixteen lesions per class.
PATIENT_LESIONS = (
    [("nv", "mel"), ("nv", "mel"), ("nv", "nv"), ("mel", "mel", "nv"), ("bkl", "nv"),
     ("bkl", "mel"), ("bcc", "bcc"), ("bkl", "bkl")]
    + [("nv",)] * 10 + [("mel",)] * 11 + [("bkl",)] * 12 + [("bcc",)] * 14
)
# Lesions photographed twice, per class.
REPEATS_PER_CLASS = 2
# How many lesions lose one metadata field (picked at random among the eligible ones).
MISSING_COUNTS = {"age": 3, "sex": 4, "site": 3}

# RGB colours. Dark lesions are brown, light ones grey-violet; rim -> centre gradient.
DARK_RIM, DARK_CENTRE = (150, 95, 70), (80, 48, 34)
LIGHT_RIM, LIGHT_CENTRE = (175, 150, 160), (125, 110, 135)
SKIN_LIGHT, SKIN_MEDIUM = (236, 200, 178), (205, 158, 128)
HAIR = (45, 32, 26)


@dataclass
class Lesion:
    """One lesion, its patient's metadata and the parameters of its outline."""

    lesion_id: str
    patient_id: str
    diagnosis: str
    age: int | None
    sex: str | None
    site: str | None
    n_images: int
    radius: float  # mean radius in pixels
    harmonics: list[tuple[int, float, float]]  # (order, relative amplitude, phase)
    colour_shift: np.ndarray  # per-lesion RGB jitter added to the class colours


def _outline_harmonics(rng: np.random.Generator, lobed: bool) -> list[tuple[int, float, float]]:
    """Fourier terms of the radius r(theta); lobed outlines have one dominant 3- or 4-fold term."""
    if lobed:
        # Three lobes need deeper notches than four for the same loss of convexity.
        order = int(rng.integers(3, 5))
        depth = rng.uniform(0.36, 0.44) if order == 3 else rng.uniform(0.28, 0.34)
        terms = [(order, depth, rng.uniform(0, 2 * np.pi)),
                 (2, rng.uniform(0.06, 0.12), rng.uniform(0, 2 * np.pi)),  # asymmetry
                 (7, rng.uniform(0.02, 0.05), rng.uniform(0, 2 * np.pi))]  # ragged border
    else:
        terms = [(2, rng.uniform(0.04, 0.12), rng.uniform(0, 2 * np.pi))]
        terms += [(k, rng.uniform(0.005, 0.02), rng.uniform(0, 2 * np.pi)) for k in (3, 5)]
    return terms


def _colour_shift(rng: np.random.Generator) -> np.ndarray:
    """Per-lesion RGB jitter: mostly lighter or darker, only slightly another hue."""
    return (rng.uniform(-15, 15) + rng.uniform(-5, 5, size=3)).astype(np.float32)


def _plan_cohort(rng: np.random.Generator) -> list[Lesion]:
    """Patients, lesions and metadata, following the label rule in the module docstring."""
    lesions: list[Lesion] = []
    order = rng.permutation(len(PATIENT_LESIONS))
    for p_index, template in enumerate(order):
        diagnoses = PATIENT_LESIONS[template]
        low = max(AGE_RANGE[d][0] for d in diagnoses)
        high = min(AGE_RANGE[d][1] for d in diagnoses)
        # Ages in 5-year steps, as in HAM10000.
        age = int(rng.choice(np.arange(low + (-low) % 5, high + 1, 5)))
        sex = str(rng.choice(["female", "male"]))
        for diagnosis in diagnoses:
            lesions.append(Lesion(
                lesion_id="", patient_id=f"PAT_{p_index + 1:04d}", diagnosis=diagnosis, age=age,
                sex=sex, site=str(rng.choice(SITES[diagnosis])), n_images=1,
                radius=float(rng.uniform(32, 46)),
                harmonics=_outline_harmonics(rng, diagnosis in LOBED),
                colour_shift=_colour_shift(rng),
            ))
    for diagnosis in CLASSES:
        candidates = [lesion for lesion in lesions if lesion.diagnosis == diagnosis]
        for index in rng.choice(len(candidates), REPEATS_PER_CLASS, replace=False):
            candidates[index].n_images = 2
    _drop_fields(lesions, rng)
    for index, lesion in enumerate(lesions):
        lesion.lesion_id = f"LES_{index + 1:04d}"
    return lesions


def _drop_fields(lesions: list[Lesion], rng: np.random.Generator) -> None:
    """Blank a few metadata cells, never both age and site of a bkl or bcc lesion."""
    for field_name, count in MISSING_COUNTS.items():
        eligible = [
            lesion for lesion in lesions
            if getattr(lesion, field_name) is not None
            and not (lesion.diagnosis in ("bkl", "bcc") and field_name in ("age", "site")
                     and (lesion.age is None or lesion.site is None))
        ]
        for index in rng.choice(len(eligible), count, replace=False):
            setattr(eligible[index], field_name, None)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _low_frequency_noise(rng: np.random.Generator, cells: tuple[int, int]) -> np.ndarray:
    """Smooth noise in about [-1, 1] over the image, from a coarse random grid upsampled."""
    grid = rng.standard_normal(cells).astype(np.float32)
    return np.clip(cv2.resize(grid, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC), -2.5, 2.5) / 2.5


def _skin(rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 skin background with blotchy texture."""
    tone = rng.uniform(0, 1)
    base = np.array(SKIN_LIGHT, np.float32) * (1 - tone) + np.array(SKIN_MEDIUM, np.float32) * tone
    texture = 1.0 + 0.05 * _low_frequency_noise(rng, (8, 10)) + 0.03 * _low_frequency_noise(rng, (24, 32))
    return base[None, None, :] * texture[..., None]


def _lesion_mask(lesion: Lesion, rng: np.random.Generator) -> np.ndarray:
    """(H, W) uint8 0/255 outline of the lesion at a random pose (rotation, scale, position)."""
    rotation = rng.uniform(0, 2 * np.pi)
    scale = rng.uniform(0.92, 1.08)
    cx = WIDTH / 2 + rng.uniform(-18, 18)
    cy = HEIGHT / 2 + rng.uniform(-12, 12)
    theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    radius = np.ones_like(theta)
    for order, amplitude, phase in lesion.harmonics:
        radius += amplitude * np.cos(order * (theta - rotation) + phase)
    radius *= lesion.radius * scale
    points = np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    # Sub-pixel vertices (shift=4) keep the outline smooth rather than stair-stepped.
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)
    return mask


def _paint_lesion(image: np.ndarray, mask: np.ndarray, lesion: Lesion, rng: np.random.Generator) -> np.ndarray:
    """Blend the pigmented lesion into the skin: darker centre, mottling, soft border."""
    rim, centre = (DARK_RIM, DARK_CENTRE) if lesion.diagnosis in DARK else (LIGHT_RIM, LIGHT_CENTRE)
    rim = np.array(rim, np.float32) + lesion.colour_shift
    centre = np.array(centre, np.float32) + lesion.colour_shift
    depth = cv2.distanceTransform((mask > 0).astype(np.uint8), cv2.DIST_L2, 5)
    t = _smoothstep(depth / (0.6 * lesion.radius))[..., None]
    colour = rim * (1 - t) + centre * t
    mottling = 1.0 + 0.10 * _low_frequency_noise(rng, (20, 26)) + 0.06 * _low_frequency_noise(rng, (48, 64))
    colour = colour * mottling[..., None]
    alpha = cv2.GaussianBlur((mask > 0).astype(np.float32), (0, 0), 1.6)[..., None]
    return image * (1 - alpha) + colour * alpha


def _draw_hairs(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A few thin, curved, dark hairs crossing the field; drawn on top of the lesion."""
    canvas = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        start = rng.uniform([0, 0], [WIDTH, HEIGHT])
        angle = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(70, 200)
        end = start + length * np.array([np.cos(angle), np.sin(angle)])
        bend = (start + end) / 2 + rng.uniform(-25, 25, size=2)
        s = np.linspace(0, 1, 40)[:, None]
        curve = (1 - s) ** 2 * start + 2 * (1 - s) * s * bend + s ** 2 * end
        colour = tuple(int(c) for c in np.array(HAIR) + rng.integers(-10, 11, size=3))
        cv2.polylines(canvas, [np.round(curve * 16).astype(np.int32)], False, colour,
                      thickness=int(rng.choice([1, 1, 2])), lineType=cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32)


def _vignette(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The dark circular border of a contact dermatoscope's field of view."""
    cx = WIDTH / 2 + rng.uniform(-8, 8)
    cy = HEIGHT / 2 + rng.uniform(-6, 6)
    radius = rng.uniform(0.50, 0.58) * WIDTH
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    distance = np.hypot(xx - cx, yy - cy)
    light = 0.04 + 0.96 * _smoothstep((radius - distance) / 22.0)
    return image * light[..., None]


def render(lesion: Lesion, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image of ``lesion``.

    Args:
        lesion: what to draw.
        rng: the random stream of this image alone.

    Returns:
        (RGB uint8 (H, W, 3) image, uint8 (H, W) mask with values 0/255).
    """
    skin = _skin(rng)
    mask = _lesion_mask(lesion, rng)
    image = _paint_lesion(skin, mask, lesion, rng)
    image = _draw_hairs(image, rng)
    image = _vignette(image, rng)
    image = image + rng.normal(0, 2.5, size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), mask


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def generate(out_dir: Path, seed: int = SEED) -> list[dict[str, str]]:
    """Write images/, masks/, labels.csv and patients.csv under ``out_dir``.

    Args:
        out_dir: destination folder (created if needed). Earlier generated images and masks
            there (``SYN_*``) are removed first, so the folder holds exactly this data set.
        seed: the random seed; the committed data use ``SEED``.

    Returns:
        The rows of labels.csv, as written.
    """
    out_dir = Path(out_dir)
    images_dir, masks_dir = out_dir / "images", out_dir / "masks"
    for folder, pattern in ((images_dir, "SYN_*.jpg"), (masks_dir, "SYN_*.png")):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(pattern):
            stale.unlink()
    lesions = _plan_cohort(np.random.default_rng(seed))
    rows: list[dict[str, str]] = []
    for lesion in lesions:
        for _ in range(lesion.n_images):
            image_id = f"SYN_{len(rows) + 1:04d}"
            # One stream per image, so changing one image never shifts the others.
            image, mask = render(lesion, np.random.default_rng([seed, len(rows)]))
            cv2.imwrite(str(images_dir / f"{image_id}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            cv2.imwrite(str(masks_dir / f"{image_id}.png"), mask)
            rows.append({
                "image_id": image_id, "file": f"images/{image_id}.jpg",
                "mask_file": f"masks/{image_id}.png", "diagnosis": lesion.diagnosis,
                "age": _cell(lesion.age), "sex": _cell(lesion.sex), "site": _cell(lesion.site),
                "lesion_id": lesion.lesion_id, "patient_id": lesion.patient_id,
            })
    _write_csv(out_dir / "labels.csv", LABEL_COLUMNS, rows)
    _write_csv(out_dir / "patients.csv", PATIENT_COLUMNS, [
        {"image": f"{row['image_id']}.jpg", "patient_id": row["patient_id"], "age": row["age"],
         "sex": row["sex"], "site": row["site"]} for row in rows
    ])
    return rows


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: the sample_data folder)")
    args = parser.parse_args()
    rows = generate(args.out)
    print(f"wrote {len(rows)} images of {len({r['lesion_id'] for r in rows})} lesions to {args.out}")


if __name__ == "__main__":
    main()
