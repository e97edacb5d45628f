"""What the report shows of each image: a thumbnail, the lesion outline and the attention maps.

During ``screen folder --report`` these are made from the pixels and model outputs the pipeline
already has (no second decode) and written beside the report as they come: thumbnails as
JPEG files, outlines and attention maps as one JSON line per image in ``views.jsonl``. So memory
does not grow with the folder, and ``screen report`` can rebuild the page later from them.

Pictures belong to one screening: one image file's content and metadata (the journal's
fingerprint) screened by one bundle (its identity). They are named and recorded by all three, so
a run that screens a replaced file, or with another bundle, adds pictures beside the old ones
instead of overwriting what last night's page links; writing a page removes those it no longer
needs (``tidy``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from ..atomic import atomic_write_chunks
from ..attention import QUERY_LABELS, normalised_maps
from ..errors import InputError
from ..image_header import ImageDecodeError
from ..images import decode_image, read_image_file
from ..output_watch import OutputWatch, watched
from ..results import display_name
from ..stalled_reads import ImagesUnreachable, ReadTimedOut, StallGuard

THUMB_SIDE = 200  # px, longest side: sharp at the page's 100 px display size on a 2x screen
THUMB_QUALITY = 80  # JPEG quality: about 8 KB per dermoscopy thumbnail
VIEWS_FILE = "views.jsonl"
THUMBS = "thumbs"
OUTLINE_SCALE = 1000  # outline coordinates are integers in 0..1000 of the image's width/height
FILE_CHANGED = "file changed since it was screened"  # shown instead of a picture of other content
# Shown instead of a picture whose file did not answer within the time budget (or after several
# did not: the drive is taken as gone and no more are tried). Not recorded: the next report tries again.
FILE_STALLED = "no picture: the file did not finish reading (a stalled network drive?)"
_THUMB_FILE = re.compile(r"[0-9a-f]{20}\.jpg")  # what thumb_name makes: the only files tidy removes


@dataclass(frozen=True)
class View:
    """One image's visual material for the report."""

    image: str  # path relative to the images folder, as the results CSV shows it (display_name)
    thumb: str  # file name inside the thumbs folder; "" when there is none
    size: tuple[int, int]  # thumbnail (width, height) in pixels
    outline: str = ""  # SVG path of the lesion mask's outer contours, in 0..1000 x 0..1000
    attention: tuple[dict[str, Any], ...] = ()  # per query: label, grid [h, w], values 0..255, peak
    # The screened content and metadata (the journal's fingerprint) these pictures show: a run
    # that screens a new file at the same path without making pictures leaves them stale.
    fingerprint: str = ""
    # The bundle that screened it (Manifest.identity): another bundle's outline and attention maps
    # are not this result's. "" in records written before bundles were recorded: matches none.
    bundle: str = ""
    note: str = ""  # why there is no picture, shown in its place; never recorded in views.jsonl

    @property
    def screening(self) -> tuple[str, str, str]:
        """Which screening these pictures show: (image, fingerprint, bundle)."""
        return (self.image, self.fingerprint, self.bundle)

    def to_json(self) -> str:
        data = asdict(self)
        del data["note"]
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> "View":
        # NaN or Infinity (or 1e999) in a damaged line would break the page's JSON: not a view.
        data = json.loads(line, parse_constant=_not_a_number, parse_float=_finite_float)
        return cls(image=str(data["image"]), thumb=str(data["thumb"]),
                   size=(int(data["size"][0]), int(data["size"][1])), outline=str(data.get("outline", "")),
                   attention=tuple(dict(a) for a in data.get("attention", ())),
                   fingerprint=str(data.get("fingerprint", "")), bundle=str(data.get("bundle", "")))


def _not_a_number(name: str) -> float:
    raise ValueError(f"{name} is not a number a view can hold")


def _finite_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def screened_content(fingerprint: str) -> str:
    """The content part of a journal fingerprint: ``b2:1f0c…:3,1,5`` -> ``b2:1f0c…``."""
    return fingerprint.rpartition(":")[0]


def screened_metadata(fingerprint: str) -> str:
    """The metadata codes of a journal fingerprint: ``b2:1f0c…:3,1,5`` -> ``3,1,5``."""
    return fingerprint.rpartition(":")[2]


def thumb_name(image: str, fingerprint: str = "", bundle: str = "") -> str:
    """A file name for the thumbnail of one screening of an image, safe whatever the path holds.

    Named by the screening, not the image alone: a later run that screens a replaced file at the
    same path writes another file, so the page of the earlier run keeps showing its own picture.
    """
    key = "\0".join((image, fingerprint, bundle)).encode("utf-8", "surrogateescape")
    return hashlib.sha1(key).hexdigest()[:20] + ".jpg"


def thumbnail(rgb: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """An RGB image shrunk (never enlarged) so its longest side is at most ``side``."""
    height, width = rgb.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def outline_path(mask: np.ndarray, threshold: float) -> str:
    """The outer contours of ``mask > threshold`` as an SVG path in 0..1000 coordinates.

    The model's mask covers the whole frame (squashed to the input size), so normalised
    coordinates land on the same spot of a thumbnail of any aspect ratio.
    """
    binary = (mask > threshold).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    height, width = binary.shape
    parts = []
    for contour in contours:
        if cv2.contourArea(contour) < 4:  # specks of a few pixels are noise, not a lesion border
            continue
        points = cv2.approxPolyDP(contour, 0.75, True)[:, 0, :].astype(np.float64)
        # Pixel centres: x + 0.5, so a mask covering everything outlines the whole frame.
        xs = np.round((points[:, 0] + 0.5) * OUTLINE_SCALE / width).astype(int)
        ys = np.round((points[:, 1] + 0.5) * OUTLINE_SCALE / height).astype(int)
        parts.append("M" + "L".join(f"{x} {y}" for x, y in zip(xs, ys)) + "Z")
    return "".join(parts)


def attention_views(attention: np.ndarray | None, queries: list[str]) -> tuple[dict[str, Any], ...]:
    """(Q, h, w) attention weights -> per query: label, grid, 0..255 values scaled to the map's
    peak, and the peak weight itself (so the page can say how concentrated the map is)."""
    if attention is None or not np.all(np.isfinite(attention)):  # no map rather than a broken page
        return ()
    scaled = normalised_maps(attention)
    views = []
    for name, weights, display in zip(queries, attention, scaled):
        views.append({"query": name, "label": QUERY_LABELS.get(name, f"{name} query"),
                      "grid": [int(weights.shape[0]), int(weights.shape[1])],
                      "values": np.round(display * 255).astype(int).ravel().tolist(),
                      "peak": round(float(weights.max()), 4)})
    return tuple(views)


def encode_jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])
    if not ok:
        raise OSError("JPEG encoding of a thumbnail failed")
    return data.tobytes()


def write_new_file(path: Path, data: bytes) -> None:
    """Write ``path``, never through a symbolic link planted at its name.

    Not fsync'd: a thumbnail is recreated by the next run, and two fsyncs per image would cost
    more than the thumbnail itself.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o666)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


class ViewWriter:
    """Writes thumbnails and view lines into a report's asset folder as images are screened.

    A context manager; the views file is appended to, so a resumed run keeps the views of the
    images it does not screen again. Records are kept per screening (image, fingerprint, bundle):
    the report picks each row's own (build._pictures_of_each_row), and tidy() compacts the file.
    """

    def __init__(self, folder: Path, queries: list[str], threshold: float, bundle: str = "",
                 watch: OutputWatch | None = None) -> None:
        self.folder = Path(folder)
        self.queries = list(queries)
        self.threshold = threshold
        self.bundle = bundle  # identity of the bundle screening (Manifest.identity), recorded per view
        # The run's writes' watchdog (screening.output_watch): opening, each picture and closing are
        # its steps, so a pictures folder on a share that stops answering ends the run with one line.
        self.watch = watch
        self._handle = None

    def __enter__(self) -> "ViewWriter":
        with watched(self.watch, "opening the report's pictures", self.folder):
            return self._open()

    def _open(self) -> "ViewWriter":
        (self.folder / THUMBS).mkdir(parents=True, exist_ok=True)
        path = self.folder / VIEWS_FILE
        # Never through a symbolic link planted at its name (as the thumbnails, write_new_file).
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o666)
        except OSError as exc:
            raise InputError(f"cannot write the report's pictures: {path}: {exc.strerror}") from exc
        self._handle = os.fdopen(fd, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            with watched(self.watch, "closing the report's pictures", self.folder):
                self._handle.close()
            self._handle = None

    def add(self, image: str, thumb: np.ndarray | None, mask: np.ndarray | None = None,
            attention: np.ndarray | None = None, fingerprint: str = "", bundle: str | None = None) -> View:
        """:meth:`_add`, a step of the watch."""
        with watched(self.watch, f"writing the report's pictures of {display_name(image)}", self.folder):
            return self._add(image, thumb, mask, attention, fingerprint, bundle)

    def _add(self, image: str, thumb: np.ndarray | None, mask: np.ndarray | None = None,
            attention: np.ndarray | None = None, fingerprint: str = "", bundle: str | None = None) -> View:
        """Record one image: its thumbnail (RGB), model-size mask and (Q, h, w) attention.

        ``image`` as discovery gave it; recorded as the CSV shows it (a name that is not UTF-8
        with escapes), which is also what keeps the views file writable. ``bundle``: the
        screening's bundle when it is not the writer's (a thumbnail made for an earlier run).
        """
        bundle = self.bundle if bundle is None else bundle
        shown = display_name(image)
        name = ""
        size = (0, 0)
        if thumb is not None:
            name = thumb_name(shown, fingerprint, bundle)
            write_new_file(self.folder / THUMBS / name, encode_jpeg(thumb))
            size = (int(thumb.shape[1]), int(thumb.shape[0]))
        view = View(image=shown, thumb=name, size=size,
                    outline="" if mask is None else outline_path(mask, self.threshold),
                    attention=attention_views(attention, self.queries), fingerprint=fingerprint,
                    bundle=bundle)
        self._handle.write(view.to_json() + "\n")
        return view

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()


def read_views(folder: Path) -> dict[str, View]:
    """The latest view recorded in ``folder`` for each image; {} when there are none."""
    return {view.image: view for view in read_view_records(folder)}


def read_view_records(folder: Path) -> list[View]:
    """Every view recorded in ``folder``, in the order written (a later one is newer).

    Unreadable lines (a run killed mid-write) are skipped: that image just shows no overlay.
    """
    path = Path(folder) / VIEWS_FILE
    if not path.is_file():
        return []
    thumbs = Path(folder) / THUMBS
    present = set(os.listdir(thumbs)) if thumbs.is_dir() else set()  # one listing, not a stat per image
    views = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                view = View.from_json(line)
            except (ValueError, KeyError, TypeError, IndexError, RecursionError):
                continue
            if view.thumb and view.thumb not in present:
                view = View(view.image, "", (0, 0), view.outline, view.attention, view.fingerprint, view.bundle)
            views.append(view)
    return views


def tidy(folder: Path, keep: list[View]) -> int:
    """Leave in ``folder`` only the views ``keep`` (and their thumbnails); returns files removed.

    Every run appends to ``views.jsonl`` and adds a thumbnail per screening, so without this the
    folder would grow night after night with pictures no page links. ``views.jsonl`` is
    rewritten atomically (never through a link); only files named like thumbnails are removed.
    """
    folder = Path(folder)
    kept = {view.screening: view for view in keep}  # one record per screening, the latest
    atomic_write_chunks(folder / VIEWS_FILE, ((view.to_json() + "\n").encode("utf-8", "surrogateescape")
                                              for view in kept.values()), durable=False)
    names = {view.thumb for view in kept.values() if view.thumb}
    thumbs = folder / THUMBS
    removed = 0
    for name in os.listdir(thumbs) if thumbs.is_dir() else ():
        if _THUMB_FILE.fullmatch(name) and name not in names:
            try:
                os.unlink(thumbs / name)
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def thumbnails_from_files(images: list[str], root: Path, writer: ViewWriter, reads: StallGuard,
                          fingerprints: dict[str, str] | None = None,
                          bundles: dict[str, str] | None = None) -> Iterator[View]:
    """Views with a thumbnail only, decoding each image from ``root`` (for images screened
    earlier without ``--report``, or a report rebuilt by ``screen report``).

    ``images`` as discovery gives them (the file names to open); ``fingerprints`` and
    ``bundles`` (by displayed name) say which screening each picture is made for. An image that
    cannot be read any more gets a view without a thumbnail. A file whose content is no longer
    what was screened gets none either, and a note saying so (not recorded: a file put back is
    pictured next time). Every file is read through ``reads``, within its time budget: a file
    that does not answer gets a note in place of its picture, and once ``reads`` takes the drive
    as gone, so do all the files after it, without a read more.
    """
    fingerprints = fingerprints or {}
    bundles = bundles or {}
    gone = False
    for image in images:
        shown = display_name(image)
        fingerprint = fingerprints.get(shown, "")
        bundle = bundles.get(shown, writer.bundle)
        path = Path(root) / image
        stalled = View(shown, "", (0, 0), fingerprint=fingerprint, bundle=bundle, note=FILE_STALLED)
        if gone:
            yield stalled
            continue
        try:
            current = reads.digest(path) if fingerprint else None  # None: gone or unreadable, below
            if current is not None and current != screened_content(fingerprint):
                yield View(shown, "", (0, 0), fingerprint=fingerprint, bundle=bundle, note=FILE_CHANGED)
                continue
            data = reads.call(read_image_file, path)
        except ImagesUnreachable:
            gone = True
            yield stalled
            continue
        except ReadTimedOut:
            yield stalled  # may answer next time: not recorded
            continue
        except ImageDecodeError:  # a vanished or unreadable file only costs its picture
            yield writer.add(image, None, fingerprint=fingerprint, bundle=bundle)
            continue
        try:
            decoded = decode_image(data, (THUMB_SIDE, THUMB_SIDE))
            yield writer.add(image, thumbnail(decoded.rgb), fingerprint=fingerprint, bundle=bundle)
        except Exception:  # an unreadable picture only costs its picture
            yield writer.add(image, None, fingerprint=fingerprint, bundle=bundle)
