"""The screening data flow of a stream of images: plan, decode, preprocess, infer, postprocess.

    plan (metadata row, minus what the journal already has, by content hash) -> batches on a fixed grid
    -> decode in a thread pool, a few batches ahead -> preprocess -> segmenter -> classifier
    -> probabilities, risk, lesion area (and mask PNGs) -> outcomes, one batch at a time

Only a bounded number of batches is in flight at any time, so memory does not grow with the
number of images; a bad image becomes an error row and never stops the run. The folder-level
run around it (checks, journal, ranked CSV, summary) is in ``screening/session.py``.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from contextlib import nullcontext
from typing import Callable, Container, Iterable, Iterator

import cv2
import numpy as np

from .atomic import atomic_write
from .backends.bundle import BundleBackend
from .fingerprint import content_digest
from .decode_pool import DEFAULT_TIME_BUDGET_S, DecodeLimits, DecodePool
from .stalled_reads import ImagesUnreachable
from .images import DEFAULT_MAX_DECODE_BYTES, DecodedImage, ImageDecodeError, load_image
from .manifest import Manifest
from .metadata import MetaCodes, MetadataVocabulary
from .patients import PatientTable
from .preprocess import apply_preprocessing, normalise, resize_mask, resize_rgb, risk_score, softmax
from .report.views import ViewWriter, thumbnail
from .output_watch import OutputWatch, watched
from .results import DECIMALS, OK, Outcome, display_name, error_outcome
from .tta import run_views

DEFAULT_BATCH_SIZE = 8
# Batches decoding ahead of the one being inferred: enough to keep the decoder threads busy
# while the models run, few enough that memory stays flat.
DEFAULT_PREFETCH = 2
# The overlay is for a quick look; a capped size keeps a kept full-resolution image out of memory.
OVERLAY_MAX_SIDE = 1024
OVERLAY_COLOUR = (0, 255, 0)  # BGR green: visible on skin tones and dark lesions alike
INFERENCE_FAILED = "inference failed"  # how every error row of a model failure begins, or NOT_A_NUMBER
NOT_A_NUMBER = ("the model's output for this image is not a number (NaN or infinity; with a TensorRT FP16 "
                "engine, --backend onnxruntime may succeed)")
# How every error row of a picture the models ran on but cannot have assessed begins (blank,
# transparent, a thumbnail): see assessment_problems. Such a row keeps no risk
# and no flag, as an empty file's does: "routine" on a picture of nothing would read as a lesion
# found harmless, and its risk, ranked among the lesions', as a lesion's.
NOT_ASSESSED = "not assessed"
# Below half the model input on its shorter side the picture is stretched more than 2x per side
# (each source pixel over 4+ model pixels): a thumbnail, not a dermoscopy image. The starter
# bundle learned from pictures upscaled at most ~1.9x (its 84 px ISIC 2019 thumbnails at a 160 px
# input), so this flags only pictures smaller than any it learned from.
MIN_SIDE_OF_INPUT = 0.5
# The largest per-channel standard deviation (grey levels, 0-255) of the picture at model input
# size below which it is blank or one colour throughout. Real dermoscopy is far above it: of
# 3,266 images sampled from ../shared/data (HAM10000, ISIC 2017-2019, UDA-1) the lowest was 6.4
# and 1 % were under 9; a uniform JPEG (black, white, skin) is under 1.
MIN_PIXEL_SPREAD = 2.0
# Mean opacity (alpha) below which most of the picture is transparent: what the models see of it
# is black (images.py composites alpha onto black). A dermoscope's round field of view with a
# transparent surround keeps about 0.79 (pi / 4) and passes.
MIN_OPACITY = 0.5


# -- plan: what to screen ------------------------------------------------------------------------

# slots: one instance per image lives for the whole run, so its size is per-image memory.
@dataclass(frozen=True, slots=True)
class ImageJob:
    """One image file to screen, with its metadata row already attached."""

    image: str  # path relative to the images folder, POSIX separators
    meta: MetaCodes  # encoded with the bundle's vocabulary
    patient_id: str = ""
    warnings: tuple[str, ...] = ()  # metadata warnings: no row, unknown or unusable values
    extra: dict[str, str] = field(default_factory=dict)  # extra patients.csv columns (the row's dict, shared)
    row_key: str | None = None  # key of the patients.csv row used; None when none matched
    digest: str | None = None  # content hash (screening.fingerprint), filled in before screening

    @property
    def fingerprint(self) -> str:
        """Changes when the file's bytes or its encoded metadata change, so the image is re-screened.

        Keyed on content, not size and mtime: copies that keep mtimes (``cp -p``, ``rsync -t``,
        archives) and same-size replacements must not keep an old result.
        """
        return f"{self.digest or 'unread'}:{self.meta.age},{self.meta.sex},{self.meta.site}"


def plan_jobs(images: Iterable[str], table: PatientTable, vocab: MetadataVocabulary) -> list[ImageJob]:
    """Attach each image's metadata row (or unknown metadata, with a warning), and a warning to
    each image whose name looks the same as another's (see ``_look_alikes``).

    Nothing is read from the image files here: a file on a drive that stopped answering would
    hold up the whole plan. The first look at a file is its read within the time budget
    (hashing or decoding), where a silent drive costs one retryable error row.

    Args:
        images: relative POSIX paths from discovery.
        table: the patients CSV.
        vocab: the bundle's metadata vocabulary (never a default one).
    """
    images = list(images)
    alike = _look_alikes(images)
    jobs = []
    for image in images:
        match = table.match(image)
        warnings = list(match.warnings)
        if not image.isascii():
            warnings[:0] = _name_warnings(image, alike)
        row = match.row
        if row is None:
            codes = vocab.unknown_codes()
            jobs.append(ImageJob(image, codes, warnings=tuple(warnings)))
            continue
        codes, field_warnings = vocab.codes(row.age, row.sex, row.site)
        jobs.append(ImageJob(image, codes, patient_id=_text(row.patient_id),
                             warnings=tuple(warnings + field_warnings),
                             extra=row.extra, row_key=row.key))
    return jobs


def _look_alikes(images: list[str]) -> Counter[str]:
    """How many images share each NFC spelling, of the names that are not ASCII (an ASCII name has
    no other Unicode form). Two files 'café.png', é as one character and as e + combining accent,
    are two results whose names print the same: each row must say so, or a reviewer opening
    'café.png' for one row's risk may look at the other lesion."""
    return Counter(unicodedata.normalize("NFC", image) for image in images if not image.isascii())


def _name_warnings(image: str, alike: Counter[str]) -> list[str]:
    """What a reviewer must know of a name that may print as another: a look-alike in the folder,
    invisible characters (direction overrides such as U+202E, zero-width spaces) and where they are."""
    warnings = []
    others = alike.get(unicodedata.normalize("NFC", image), 1) - 1
    if others:
        warnings.append(f"{others} other file name{' looks' if others == 1 else 's look'} the same as this one "
                        f"(the same letters in another Unicode form, e.g. é as e + accent): check which file "
                        f"this row is")
    hidden = sorted({c for c in image if unicodedata.category(c) == "Cf"})
    if hidden:
        shown = "".join(f"\\u{ord(c):04x}" if c in hidden else c for c in display_name(image))
        warnings.append(f"its name holds invisible characters ({', '.join(f'U+{ord(c):04X}' for c in hidden)}) "
                        f"that can make it print as another name: {shown}")
    return warnings


def _text(value: str | None) -> str:
    return "" if value is None else str(value)


def mask_paths(save_dir: Path, image: str) -> tuple[Path, Path]:
    """Where ``--save-masks`` writes an image's mask and overlay; the full file name is kept
    (``a/x.jpg`` -> ``a/x.jpg.mask.png``) so that ``x.jpg`` and ``x.png`` never collide."""
    base = Path(save_dir) / image
    return base.with_name(base.name + ".mask.png"), base.with_name(base.name + ".overlay.png")


def with_digests(jobs: list[ImageJob], root: Path, pool: ThreadPoolExecutor | None = None,
                 digest: Callable[[Path], str | None] = content_digest) -> list[ImageJob]:
    """The jobs with their content digests filled in (hashed in ``pool`` when given).

    ``digest`` hashes one file: :func:`screening.fingerprint.content_digest`, or a
    :class:`screening.stalled_reads.StallGuard`'s, which gives up on a read past the time budget;
    a file it gave up on gets no digest (unknown: screened again, and its row says why).
    """
    paths = [Path(root) / job.image for job in jobs]

    def digest_or_unknown(path: Path) -> str | None:
        try:
            return digest(path)
        except ImageDecodeError:
            return None

    digests = pool.map(digest_or_unknown, paths) if pool is not None else map(digest_or_unknown, paths)
    return [replace(job, digest=value) for job, value in zip(jobs, digests)]


def failed_in_the_models(outcome: Outcome) -> bool:
    """Whether an error row is the models' failure (an exception, a NaN), not the image's."""
    return outcome.status != OK and (outcome.error == NOT_A_NUMBER or outcome.error.startswith(INFERENCE_FAILED))


def split_finished(jobs: list[ImageJob], finished: dict[str, Outcome],
                   save_masks: Path | None = None, root: Path | None = None,
                   pool: ThreadPoolExecutor | None = None,
                   digest: Callable[[Path], str | None] = content_digest) -> tuple[dict[str, Outcome], list[ImageJob]]:
    """Outcomes to reuse (same content and metadata; mask files present when masks are asked for)
    and the jobs still to screen, in discovery order.

    With ``root``, the images that have a journaled result are hashed here, so a file replaced
    by another of the same size and mtime is screened again; an unreadable file (or one that did
    not finish reading, with a bounded ``digest``) never matches.
    """
    if root is not None:
        hashed = iter(with_digests([job for job in jobs if job.image in finished], root, pool, digest))
        jobs = [next(hashed) if job.image in finished else job for job in jobs]
    reused: dict[str, Outcome] = {}
    todo = []
    for job in jobs:
        outcome = finished.get(job.image)
        usable = outcome is not None and job.digest is not None and outcome.fingerprint == job.fingerprint \
            and not outcome.retry
        if usable and save_masks is not None and outcome.status == OK:
            usable = all(p.exists() for p in mask_paths(save_masks, job.image))
        if usable:
            reused[job.image] = outcome
        else:
            todo.append(job)
    return reused, todo


def plan_batches(jobs: Iterable[ImageJob], size: int,
                 done: Container[str] = frozenset()) -> Iterator[list[ImageJob]]:
    """Batches on a fixed grid over all jobs (batch k = jobs k*size to (k+1)*size - 1), minus
    the images in ``done``; pulled lazily.

    The fixed grid makes a resumed run feed the models exactly the batches an uninterrupted
    run would have: a backend's last bits can depend on which batch a row is in, and the
    resumed CSV must be identical.
    """
    iterator = iter(jobs)
    while chunk := list(islice(iterator, size)):
        todo = [job for job in chunk if job.image not in done]
        if todo:
            yield todo


# -- decode, a few batches ahead -----------------------------------------------------------------

@dataclass
class Decoded:
    """A decoded image ready to batch."""

    job: ImageJob
    pixels: np.ndarray  # uint8 (H, W, 3) RGB at the model input size
    original_size: tuple[int, int]  # (height, width) upright, full resolution
    preview: np.ndarray | None  # RGB image for the overlay, only with --save-masks
    thumbnail: np.ndarray | None = None  # small RGB image for the HTML report, only with --report
    opacity: float = 1.0  # mean alpha of the decoded picture, 0..1 (1.0 without alpha)


@dataclass
class Failed:
    """An image that could not be decoded."""

    job: ImageJob
    reason: str
    retry: bool = False  # the cause may pass (read error, time-out): --resume tries again


def decode_one(job: ImageJob, root: Path, input_size: tuple[int, int], keep_preview: bool,
               keep_thumbnail: bool = False, load: Callable[..., DecodedImage] = load_image,
               digest: Callable[[Path], str | None] = content_digest) -> Decoded | Failed:
    """Decode and resize one image; every failure becomes a Failed with a one-line reason.

    ``load`` reads and decodes the file: :func:`screening.images.load_image` in this thread, or
    a :class:`screening.decode_pool.DecodePool`'s, which reads within a time budget and decodes
    in a child process under it; ``digest`` hashes it (the pool's, within the budget).

    Raises:
        ImagesUnreachable: the pool found several reads stuck at once: the run must stop.
    """
    try:
        if job.digest is None:
            # Hashed before decoding: if the file changes in between, the journal holds the old
            # digest with the new pixels' result, and the next --resume screens it again. A file
            # that does not finish reading for the hash is not read a second time.
            job = replace(job, digest=digest(Path(root) / job.image))
        decoded = load(Path(root) / job.image, input_size)
        pixels = resize_rgb(decoded.rgb, input_size)
        preview = _preview(decoded.rgb) if keep_preview else None
        # From the pixels already decoded (often at reduced size): the report costs no second decode.
        thumb = thumbnail(decoded.rgb) if keep_thumbnail else None
    except ImageDecodeError as exc:
        return Failed(job, exc.reason, exc.transient)
    except ImagesUnreachable:
        raise  # not this image's problem but the drive's: no row, the run stops
    except Exception as exc:  # an unforeseen decoder failure is still one image's problem
        return Failed(job, f"cannot decode image ({exc.__class__.__name__}: {_one_line(exc)})")
    return Decoded(job, pixels, decoded.original_size, preview, thumb, decoded.opacity)


def _preview(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = OVERLAY_MAX_SIDE / max(height, width)
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                      interpolation=cv2.INTER_AREA)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def decode_ahead(batches: Iterable[list[ImageJob]], root: Path, input_size: tuple[int, int],
                 pool: ThreadPoolExecutor, prefetch: int = DEFAULT_PREFETCH,
                 keep_preview: bool = False, keep_thumbnail: bool = False,
                 load: Callable[..., DecodedImage] = load_image,
                 digest: Callable[[Path], str | None] = content_digest) -> Iterator[list[Decoded | Failed]]:
    """Decode batches in ``pool`` (see :func:`decode_one`), yielding them in order.

    At most ``prefetch`` batches are decoding while the consumer works on the one yielded, so
    at most ``prefetch + 1`` batches are in memory whatever the folder size.
    """
    pending: deque[list[Future]] = deque()
    for batch in batches:
        pending.append([pool.submit(decode_one, job, root, input_size, keep_preview, keep_thumbnail, load, digest)
                        for job in batch])
        if len(pending) > prefetch:
            yield [future.result() for future in pending.popleft()]
    while pending:
        yield [future.result() for future in pending.popleft()]


# -- preprocess ----------------------------------------------------------------------------------

def preprocess(ready: list[Decoded], manifest: Manifest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack a batch into the three model inputs: segmenter image, classifier image, metadata."""
    pixels = apply_preprocessing(np.stack([item.pixels for item in ready]), manifest.preprocessing)
    vocab = manifest.metadata
    seg = normalise(pixels, manifest.segmenter.mean, manifest.segmenter.std)
    same_statistics = (manifest.segmenter.mean, manifest.segmenter.std) == (manifest.classifier.mean,
                                                                           manifest.classifier.std)
    # Bundles whose two backbones share their normalisation (the starter's two Lite0s) need
    # one pass over the pixels, not two; no backend writes into its inputs.
    cls = seg if same_statistics else normalise(pixels, manifest.classifier.mean, manifest.classifier.std)
    meta = np.stack([vocab.one_hot(item.job.meta) for item in ready])
    return seg, cls, meta


# -- infer ---------------------------------------------------------------------------------------

def _run_models(ready: list[Decoded], backend: BundleBackend,
                tta: str = "none") -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None] | str]:
    """(mask, logits, attention maps or None) per image, or the reason inference failed for it.

    With test-time augmentation the models run once per view (``screening.tta``) and the mask
    and logits are averaged. A failing batch is retried image by image, so one poisonous input
    cannot take its batch mates down with it.
    """
    attention: list[np.ndarray | None] = []

    def run(seg: np.ndarray, cls: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = backend.run_batch(seg, cls, meta)
        # The maps of the first (upright) view only: a flipped view's map would need un-flipping,
        # and an average of maps is no longer where any one pass of the model looked.
        attention.append(outputs.attention)
        return outputs.mask, outputs.logits

    try:
        mask, logits = run_views(tta, run, *preprocess(ready, backend.manifest))
        maps = attention[0] if attention else None
        return [(mask[i, 0], logits[i], None if maps is None else maps[i]) for i in range(len(ready))]
    except Exception as exc:
        if len(ready) == 1:
            return [f"{INFERENCE_FAILED} ({exc.__class__.__name__}: {_one_line(exc)})"]
    results: list[tuple[np.ndarray, np.ndarray, np.ndarray | None] | str] = []
    for item in ready:
        results.extend(_run_models([item], backend, tta))
    return results


# -- postprocess ---------------------------------------------------------------------------------

def postprocess(job: ImageJob, mask: np.ndarray, logits: np.ndarray, manifest: Manifest) -> Outcome:
    """Probabilities (temperature-scaled), risk, prediction and lesion area of one image.

    Probabilities are rounded to the output precision before the risk is summed, so that in
    the CSV ``risk`` is exactly the sum of the malignant ``p_`` columns a reviewer sees.
    """
    probabilities = np.round(softmax(logits[None, :], manifest.temperature)[0], DECIMALS)
    best = int(np.argmax(probabilities))
    return Outcome(
        image=job.image, fingerprint=job.fingerprint, status=OK,
        probabilities=tuple(float(p) for p in probabilities),
        risk=float(risk_score(probabilities, manifest.malignant_indices)),
        prediction=manifest.class_names[best], confidence=float(probabilities[best]),
        lesion_area=float(np.mean(mask > manifest.mask_threshold)),
    )


def pixel_spread(pixels: np.ndarray) -> float:
    """The largest per-channel standard deviation of uint8 RGB pixels, in grey levels (0-255)."""
    return float(np.max(np.std(pixels.reshape(-1, pixels.shape[-1]), axis=0, dtype=np.float64)))


def assessment_problems(item: Decoded, manifest: Manifest) -> list[str]:
    """Why the models' output for a decoded picture is no assessment of a lesion; [] when none.

    A mostly transparent picture (MIN_OPACITY), a near-uniform one (MIN_PIXEL_SPREAD: blank,
    over- or under-exposed, fully transparent) and one far below the model input
    (MIN_SIDE_OF_INPUT): pictures of nothing a dermatologist could read either. With the starter
    bundle none occurred on 3,266 real images sampled from ../shared/data, while blank JPEGs got
    risks of 0.19-0.24, refer and routine alike. A real picture in which the segmenter finds no
    lesion is not one of them (see no_lesion_warning).
    """
    problems = []
    if item.opacity < MIN_OPACITY:
        problems.append(f"the picture is mostly transparent (mean opacity {item.opacity:.0%}), and "
                        f"what is transparent is screened as black")
    spread = pixel_spread(item.pixels)
    if spread < MIN_PIXEL_SPREAD:
        problems.append(f"the picture is nearly uniform, blank or one colour throughout (pixel spread "
                        f"{spread:.1f} grey levels, under {MIN_PIXEL_SPREAD:g})")
    height, width = item.original_size
    model_height, model_width = manifest.input_size
    least = MIN_SIDE_OF_INPUT * min(model_height, model_width)
    if min(height, width) < least:
        problems.append(f"the picture is {width}x{height} pixels, far below the models' {model_width}x"
                        f"{model_height} input (shorter side under {least:g} px)")
    return problems


def no_lesion_warning(mask: np.ndarray, manifest: Manifest) -> str | None:
    """A warning when the segmenter found no lesion pixel in a real picture, else None.

    A warning, not a "not assessed" row: on a camera the segmenter never saw it may miss a real
    lesion, and the classifier still sees the whole picture; withholding the risk would drop a
    possibly malignant lesion from the ranking (and from `screen validate`'s misses), and a
    segmenter broken on every image would pass the broken-night guard with rows of no risk.
    """
    if np.any(mask > manifest.mask_threshold):
        return None
    return (f"the segmenter found no lesion (no pixel above the mask threshold {manifest.mask_threshold:g}): "
            f"the risk rests on the picture without a lesion outline; check the picture")


def not_assessed(problems: list[str]) -> str:
    """The error of a row whose picture the models cannot have assessed (see assessment_problems)."""
    return (f"{NOT_ASSESSED}: {'; '.join(problems)}. No risk or flag: check the picture (take or "
            f"export it again), or assess the lesion without screening")


def save_mask_files(item: Decoded, mask: np.ndarray, threshold: float, save_dir: Path) -> None:
    """Write the binary mask (0/255, at the original image size) and a contour overlay PNG."""
    mask_file, overlay_file = mask_paths(save_dir, item.job.image)
    mask_file.parent.mkdir(parents=True, exist_ok=True)
    if not os.path.realpath(mask_file.parent).startswith(os.path.join(os.path.realpath(save_dir), "")) \
            and mask_file.parent != Path(save_dir):
        # A link planted in the masks folder would send this image's mask somewhere else.
        raise OSError(f"{mask_file.parent} leads outside {save_dir} through a symbolic link")
    binary = np.where(mask > threshold, 255, 0).astype(np.uint8)
    _write_png(mask_file, resize_mask(binary, item.original_size))
    preview = item.preview if item.preview is not None else item.pixels
    outline = resize_mask(binary, preview.shape[:2])
    contours, _ = cv2.findContours(outline, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    overlay = cv2.cvtColor(preview, cv2.COLOR_RGB2BGR)
    cv2.drawContours(overlay, contours, -1, OVERLAY_COLOUR, max(1, max(preview.shape[:2]) // 300))
    _write_png(overlay_file, overlay)


def _write_png(path: Path, image: np.ndarray) -> None:
    # imencode + write rather than imwrite: imwrite fails silently on non-ASCII paths.
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    # Atomic: an interrupted run leaves no half mask (nor a temp file), and a link planted at
    # the mask's name is replaced, not followed.
    atomic_write(path, data, durable=False)


# -- one batch, then the stream ------------------------------------------------------------------

def infer_batch(batch: list[Decoded | Failed], backend: BundleBackend,
                save_masks: Path | None = None, tta: str | None = None,
                views: ViewWriter | None = None, watch: OutputWatch | None = None) -> list[Outcome]:
    """Outcomes of one decoded batch, in batch order: model results or error rows.

    ``tta`` None uses the bundle's default test-time augmentation (manifest ``tta``). Writing an
    image's mask files is a step of ``watch`` (screening.output_watch), as the report's pictures
    are of their writer's: on a share that stops answering the run ends with one line instead of
    blocking for ever.
    """
    manifest = backend.manifest
    tta = manifest.tta if tta is None else tta
    ready = [item for item in batch if isinstance(item, Decoded)]
    by_image: dict[str, Outcome] = {}
    for item, result in zip(ready, _run_models(ready, backend, tta) if ready else []):
        if isinstance(result, str):
            # Retried by --resume: out of memory, a lost GPU or a broken install passes, and the
            # image itself decoded fine.
            by_image[item.job.image] = error_outcome(item.job.image, item.job.fingerprint, result, retry=True)
            continue
        mask, logits, attention = result
        if not (np.isfinite(logits).all() and np.isfinite(mask).all()):
            # A NaN risk would print as "nan", flag as routine and scramble the ranking; an FP16
            # engine's overflow is the likely cause, so another backend (or night) may succeed.
            by_image[item.job.image] = error_outcome(item.job.image, item.job.fingerprint, NOT_A_NUMBER, retry=True)
            continue
        problems = assessment_problems(item, manifest)
        if problems:
            # An error row, not an ok row with a warning: no risk to rank among the lesions, no
            # refer/routine flag (the flag is empty only for rows without a risk), no mask and no
            # report picture, as for an image that did not decode. Not retried: the same bytes
            # give the same picture.
            by_image[item.job.image] = error_outcome(item.job.image, item.job.fingerprint, not_assessed(problems))
            continue
        outcome = postprocess(item.job, mask, logits, manifest)
        missed = no_lesion_warning(mask, manifest)
        if missed is not None:
            outcome = replace(outcome, warnings=(*outcome.warnings, missed))
        if save_masks is not None:
            try:
                with watched(watch, f"writing the mask files of {display_name(item.job.image)}", save_masks):
                    save_mask_files(item, mask, manifest.mask_threshold, save_masks)
            except OSError as exc:
                outcome = replace(outcome, warnings=(*outcome.warnings, f"mask not saved ({_one_line(exc)})"))
        if views is not None:
            try:
                views.add(item.job.image, item.thumbnail, mask, attention, fingerprint=item.job.fingerprint)
            except OSError as exc:
                outcome = replace(outcome, warnings=(*outcome.warnings, f"report picture not saved ({_one_line(exc)})"))
        by_image[item.job.image] = outcome
    for item in batch:
        if isinstance(item, Failed):
            by_image[item.job.image] = error_outcome(item.job.image, item.job.fingerprint, item.reason,
                                                     retry=item.retry)
    return [by_image[item.job.image] for item in batch]


@dataclass(frozen=True)
class PipelineOptions:
    """How the stream runs."""

    batch_size: int = DEFAULT_BATCH_SIZE  # images per model call
    workers: int = 2  # decoder threads, each with its decoder process
    # Time and memory budget per image; None reads and decodes in the threads themselves, unbounded.
    limits: DecodeLimits | None = DecodeLimits(DEFAULT_TIME_BUDGET_S, DEFAULT_MAX_DECODE_BYTES)
    prefetch: int = DEFAULT_PREFETCH  # batches decoding ahead of inference
    save_masks: Path | None = None  # folder for mask and overlay PNGs
    views: ViewWriter | None = None  # the HTML report's thumbnails, outlines and attention maps
    tta: str | None = None  # test-time augmentation (screening.tta); None = the bundle's default
    watch: OutputWatch | None = None  # the run's writes' watchdog (screening.output_watch); None: unwatched


def screen_jobs(jobs: Iterable[ImageJob], root: Path, backend: BundleBackend,
                options: PipelineOptions = PipelineOptions(),
                done: Container[str] = frozenset()) -> Iterator[list[Outcome]]:
    """Screen images with an entered backend, yielding outcomes one batch at a time.

    Args:
        jobs: all images of the run in order, consumed lazily: only
            ``(options.prefetch + 1) * options.batch_size`` images are in flight at once.
        root: the images folder.
        backend: an entered bundle backend.
        options: batch size, decoder threads, prefetch, mask output.
        done: images not to screen (results reused from the journal).
    """
    input_size = backend.manifest.input_size
    # The decoder processes close first (killed, however busy, and reads stuck on a stalled
    # drive left behind), then the threads waiting on them return at once: an interrupted run
    # never waits for a decoder or a read.
    with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="decode") as pool, \
            (DecodePool(options.workers, options.limits) if options.limits else nullcontext()) as decoders:
        load = decoders.load if decoders is not None else load_image
        digest = decoders.digest if decoders is not None else content_digest
        batches = plan_batches(jobs, options.batch_size, done)
        for batch in decode_ahead(batches, root, input_size, pool, options.prefetch,
                                  keep_preview=options.save_masks is not None,
                                  keep_thumbnail=options.views is not None, load=load, digest=digest):
            yield infer_batch(batch, backend, options.save_masks, options.tta, options.views, options.watch)
