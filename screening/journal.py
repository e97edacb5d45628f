"""The results journal beside the output, and the lock that keeps two runs off one output.

``results.csv.journal`` is JSON lines: a header naming the bundle (tag and model sha256s) and
the backend that screened its results, then one line per finished image, each with a checksum of
its content (screening.journal_lines), appended and fsync'd once per batch. A run killed at any
point leaves at most a torn last line, which the next ``--resume`` drops. The journal is kept
after the CSV is written (rewritten without stale lines), so that a later ``--resume`` on a
folder that gained images screens only the new ones.

``results.csv.lock`` is locked with ``flock`` while a run writes the output; the kernel releases
it when the run ends in any way, so it never goes stale.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import json
import os
import socket
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Sequence

from .errors import InputError, OutputError, OutputLocked
from .manifest import Manifest
from .atomic import atomic_write_chunks, create_exclusive, fsync_dir, open_no_follow, remove_stale_temp_files
from .journal_lines import LINE_CHECKSUM, BadLine, outcome_line, read_outcome
from .output_watch import OutputWatch, watched
from .results import Outcome

JOURNAL_FORMAT = "screening-journal"
JOURNAL_VERSION = 1
# What --resume does with a journal written by another bundle (or another manifest, or TTA), or
# screened on another backend.
ON_BUNDLE_CHANGE = ("rescreen", "fail")


def journal_path(output: Path) -> Path:
    """``results.csv`` -> ``results.csv.journal``."""
    output = Path(output)
    return output.with_name(output.name + ".journal")


def lock_path(output: Path) -> Path:
    """``results.csv`` -> ``results.csv.lock``."""
    output = Path(output)
    return output.with_name(output.name + ".lock")


# -- lock ---------------------------------------------------------------------------------------

class OutputLock:
    """An exclusive lock on one output path, held by the kernel; a context manager.

    ``flock`` on ``results.csv.lock``: the kernel drops the lock when its holder exits, however
    it exits (crash, ``kill -9``, reboot), so a lock can never go stale, and two runs starting
    at the same instant can never both hold it. The file names its holder (pid, host) for the
    message a second run prints; it is removed on release, while still locked, and a run that
    locked a file removed meanwhile tries again on the new one.

    Taking and releasing it are steps of ``watch`` (screening.output_watch), when given: on a
    share that stopped answering they block like any write.
    """

    def __init__(self, output: Path, watch: OutputWatch | None = None) -> None:
        self.path = lock_path(output)
        self.output = Path(output)
        self.held = False
        self.notes: list[str] = []  # warnings for the user
        self._fd: int | None = None
        self._watch = watch

    def __enter__(self) -> "OutputLock":
        with watched(self._watch, f"taking the output lock {self.path.name}"):
            self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        with watched(self._watch, f"releasing the output lock {self.path.name}"):
            self.release()

    def acquire(self) -> None:
        """Take the lock, without waiting.

        Raises:
            OutputLocked: another run holds it.
            InputError: the lock file cannot be created (unwritable folder, a planted link).
        """
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd)
                os.close(fd)
                raise OutputLocked(self._locked_message(owner)) from None
            if self._still_linked(fd):
                break
            os.close(fd)  # locked a file its holder removed on release: lock the new one
        content = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode() + b"\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, content, 0)
        self._fd = fd
        self.held = True
        # Holding the lock makes this run the only writer: temp files of the CSV or journal
        # can only be left by a killed run, and they hold patient data.
        for path in (self.output, journal_path(self.output)):
            for stale in remove_stale_temp_files(path):
                self.notes.append(f"removed {stale}, left by an interrupted run")

    def probe(self) -> None:
        """Fail as :meth:`acquire` would while another run holds the lock, without taking it or
        creating its file: for ``screen folder --check``.

        A holder's lock file exists while it runs (it is removed on release), so no file means
        no run. The file is locked shared (two probes never stop each other) and released at once
        by the close; only a night starting in that instant would find it busy.

        Raises:
            OutputLocked: another run holds it.
            InputError: the lock file cannot be opened (a planted link).
        """
        try:
            fd = open_no_follow(self.path, os.O_RDWR)  # as acquire opens it, but never creates it
        except FileNotFoundError:
            return  # no lock file: no run holds it
        except OSError as error:
            raise self._cannot_open(error, "open") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputLocked(self._locked_message(_read_owner(fd))) from None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self.held and self._fd is not None:
            try:
                self.path.unlink(missing_ok=True)  # while locked: no one can be holding it
            except OSError:
                pass
            os.close(self._fd)  # releases the flock
            self._fd = None
            self.held = False

    def _open(self) -> int:
        try:
            return open_no_follow(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as error:
            raise self._cannot_open(error, "create") from None

    def _cannot_open(self, error: OSError, verb: str) -> OutputError:
        """``verb``: "create" where the lock is taken, "open" where it is only probed (never created)."""
        reason = "it is a symbolic link" if error.errno == errno.ELOOP else error.strerror or str(error)
        return OutputError(f"cannot {verb} the lock file {self.path}: {reason}")

    def _still_linked(self, fd: int) -> bool:
        try:
            on_disk = os.lstat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def _locked_message(self, owner: dict | None) -> str:
        who = "another screen run"
        if owner and owner.get("pid"):
            who += f" (pid {owner['pid']} on {owner.get('host', '?')})"
        return f"{self.output} is being written by {who}: wait for it to finish"


def _read_owner(fd: int) -> dict | None:
    """The holder named in a lock file, or None (not yet written, or not ours)."""
    try:
        owner = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: nested thousands deep
        return None
    return owner if isinstance(owner, dict) else None


# -- journal ------------------------------------------------------------------------------------

def _class_indices(value: Any, count: int) -> tuple[int, ...]:
    """A header's malignant class indices, or () when absent or not indices of ``count`` classes
    (the lines are then read without the agreement check, as an earlier version's)."""
    if not isinstance(value, list) or not all(type(i) is int and 0 <= i < count for i in value):
        return ()
    return tuple(value)


@dataclass(frozen=True)
class JournalHeader:
    """The first line of a journal: which bundle produced its results."""

    bundle: str  # name@version+digest prefix (Manifest.identity)
    segmenter_sha256: str
    classifier_sha256: str
    classes: tuple[str, ...]
    manifest_sha256: str = ""  # of the canonical manifest: any edit makes another bundle
    # The backend whose numbers the results are (BundleBackend.name: onnxruntime, tensorrt). FP16
    # engines and ONNX Runtime differ in the last digits, enough to move a risk across a threshold,
    # so a resume on another backend never reuses them (see backend_differs). Empty: not recorded
    # (a journal of an earlier version, or a caller that does not say).
    backend: str = field(default="", compare=False)
    # Outcome lines that a finished run left (written by compact); lines after them are from a
    # run that was interrupted, so the job that resumes it still counts them as new.
    settled: int = field(default=0, compare=False)
    # The malignant classes' indices, whose probabilities each line's risk sums: what lets a reader
    # without the bundle (`screen report`, validation) refuse a line whose numbers were changed
    # (journal_lines.read_outcome). Empty: not recorded (an earlier version's journal).
    malignant: tuple[int, ...] = field(default=(), compare=False)
    # The checksum scheme every outcome line carries (journal_lines.LINE_CHECKSUM): a line without
    # one is then refused, not read as an earlier version's. Empty: not recorded (an earlier
    # version's journal, whose lines have none). Not compared: the same bundle's results either way.
    line_checksum: str = field(default="", compare=False)

    @classmethod
    def of(cls, manifest: Manifest, backend: str = "") -> "JournalHeader":
        return cls(manifest.identity, manifest.segmenter.sha256, manifest.classifier.sha256,
                   tuple(manifest.class_names), manifest.digest, backend,
                   malignant=tuple(manifest.malignant_indices), line_checksum=LINE_CHECKSUM)

    def to_json(self) -> str:
        data = {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, **asdict(self)}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> "JournalHeader | None":
        """The header in ``line``, or None when it is not a journal header of this version."""
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested thousands deep
            return None
        if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT \
                or data.get("version") != JOURNAL_VERSION:
            return None
        try:
            # Journals from before manifest hashing have no manifest_sha256: another bundle.
            settled = data.get("settled", 0)
            backend = data.get("backend", "")
            # Any value promises checksums: a damaged one must not turn the check off.
            scheme = data.get("line_checksum", "")
            classes = tuple(data["classes"])
            return cls(str(data["bundle"]), str(data["segmenter_sha256"]),
                       str(data["classifier_sha256"]), classes,
                       str(data.get("manifest_sha256", "")),
                       backend=backend if isinstance(backend, str) else "",
                       settled=settled if isinstance(settled, int) and not isinstance(settled, bool) else 0,
                       malignant=_class_indices(data.get("malignant"), len(classes)),
                       line_checksum=scheme if isinstance(scheme, str) else str(scheme))
        except (KeyError, TypeError):
            return None

    def describe(self) -> str:
        return (f"{self.bundle} (manifest sha256 {self.manifest_sha256[:12] or 'unknown'}, segmenter "
                f"sha256 {self.segmenter_sha256[:12]}, classifier sha256 {self.classifier_sha256[:12]})")

    def backend_differs(self, other: "JournalHeader") -> bool:
        """Whether the two headers name different backends. A header that names none (an
        earlier version's journal) differs from none: its results are taken as this run's."""
        return bool(self.backend and other.backend and self.backend != other.backend)


class Journal:
    """Finished outcomes of one output, persisted as they complete.

    Open with :meth:`open` while holding the output's lock. ``finished`` maps image paths to
    the outcomes read back from an earlier run (empty for a fresh journal).
    """

    def __init__(self, path: Path, header: JournalHeader, handle: BinaryIO,
                 finished: dict[str, Outcome], notes: list[str]) -> None:
        self.path = path
        # Appends, compaction and close are steps of this watch (see :meth:`open`).
        self.watch: OutputWatch | None = None
        self.header = header
        self._handle = handle
        self.finished = finished
        self.notes = notes  # warnings for the user: torn or unreadable lines dropped
        # Images journaled by an interrupted run of this job (after the last finished run):
        # reused now, but still new to whoever reads this job's results.
        self.fresh: set[str] = set()

    @classmethod
    def open(cls, output: Path, manifest: Manifest, *, resume: bool,
             on_bundle_change: str = "rescreen", backend: str = "",
             watch: OutputWatch | None = None) -> "Journal":
        """Open the journal of ``output`` for appending.

        Args:
            output: the results CSV the journal belongs to.
            manifest: the bundle of this run; an existing journal must come from the same one.
            resume: reuse an existing journal; without it an existing journal is an error, so
                that results are never silently reused (or silently thrown away).
            on_bundle_change: with ``resume``, a journal of another bundle (or another manifest),
                or one screened on another backend, is replaced and everything screened again,
                with a note ("rescreen", so that a nightly job survives an upgrade), or is an
                error ("fail"). Results of two bundles, or of two backends, are never mixed.
            backend: the backend this run screens on (``BundleBackend.name``), recorded in the
                header; "" compares equal to any.
            watch: every read and write of the journal is a step of it (screening.output_watch):
                a journal on a share that stops answering ends the run with one line.

        Raises:
            InputError: a journal exists without ``resume``, was written by another bundle or
                on another backend, or is not a journal.
        """
        with watched(watch, f"opening the journal {journal_path(output).name}"):
            journal = cls._open(output, manifest, resume, on_bundle_change, backend)
        journal.watch = watch
        return journal

    @classmethod
    def _open(cls, output: Path, manifest: Manifest, resume: bool, on_bundle_change: str,
              backend: str) -> "Journal":
        path = journal_path(output)
        header = JournalHeader.of(manifest, backend)
        if not os.path.lexists(path):  # a dangling link is not "no journal": _create refuses it
            return cls._create(path, header)
        _check_reuse(path, resume, on_bundle_change)
        found = _peek_header(path)
        if on_bundle_change == "rescreen" and found is not None and _other_results(found, header):
            path.unlink()
            journal = cls._create(path, header)
            journal.notes.append(_rescreen_note(path, found, header))
            return journal
        return cls._reopen(path, header, manifest.malignant_indices)

    @staticmethod
    def preview(output: Path, manifest: Manifest, *, resume: bool, on_bundle_change: str = "rescreen",
                backend: str = "") -> str:
        """What :meth:`open` would do with this output's journal, as one line; writes nothing.

        For ``screen folder --check``: a night that would fail on its journal fails the check too.

        Raises:
            InputError: as :meth:`open` would (a journal without ``resume``, another bundle's or
                another backend's with ``on_bundle_change`` "fail").
        """
        path = journal_path(output)
        header = JournalHeader.of(manifest, backend)
        if not os.path.lexists(path):
            return f"journal: none yet at {path}; every image will be screened"
        _check_reuse(path, resume, on_bundle_change)
        found = _peek_header(path)
        if found is not None and _other_results(found, header):
            if on_bundle_change == "fail":
                raise InputError(_refusal(path, found, header))
            if found != header:
                return (f"journal: {path} holds results of bundle {found.bundle}, this run uses {header.bundle}: "
                        f"every image will be screened again (--on-bundle-change fail stops instead)")
            return (f"journal: {path} holds results screened on {found.backend}, this run uses {header.backend}: "
                    f"every image will be screened again (--backend {found.backend} reuses them; "
                    f"--on-bundle-change fail stops instead)")
        if found is None:  # as _reopen would find it: a link, an empty file, or not a journal
            try:
                with os.fdopen(open_no_follow(path, os.O_RDONLY), "rb") as handle:
                    first = handle.readline(1 << 20)
            except OSError as error:
                raise OutputError(f"cannot open the journal {path}: {_os_reason(error)}") from None
            if b"\n" not in first:
                return f"journal: {path} has no complete header (a run killed at its start); every image will be screened"
            raise InputError(f"{path} is not a screening journal: delete it or choose another --out")
        return f"journal: {path} holds results of this bundle; only new or changed images will be screened"

    @classmethod
    def _create(cls, path: Path, header: JournalHeader) -> "Journal":
        try:
            handle = os.fdopen(create_exclusive(path), "wb")
        except OSError as error:
            raise OutputError(f"cannot create the journal {path}: {_os_reason(error)}") from None
        journal = cls(path, header, handle, {}, [])
        journal._write_lines([header.to_json()])
        fsync_dir(path.parent)
        return journal

    @classmethod
    def _reopen(cls, path: Path, header: JournalHeader, malignant: Sequence[int]) -> "Journal":
        try:
            handle = os.fdopen(open_no_follow(path, os.O_RDWR), "r+b")
        except OSError as error:
            raise OutputError(f"cannot open the journal {path}: {_os_reason(error)}") from None
        data = handle.read()
        complete = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
        lines = data[:complete].split(b"\n")[:-1]
        if not lines:  # killed while writing the header: nothing to reuse
            handle.close()
            path.unlink()
            return cls._create(path, header)
        found = JournalHeader.from_json(lines[0].decode("utf-8", errors="replace"))
        if found is None or _other_results(found, header):
            handle.close()
        if found is None:
            raise InputError(f"{path} is not a screening journal: delete it or choose another --out")
        if _other_results(found, header):
            raise InputError(_refusal(path, found, header))
        finished, dropped, fresh = _read_outcomes(lines[1:], header.classes, found.settled, malignant,
                                                  checksummed=bool(found.line_checksum))
        unreadable = len(dropped)
        notes = []
        if header.backend and not found.backend and finished:
            notes.append(f"{path} does not say which backend screened its results (an earlier version of screen "
                         f"wrote it): they are reused as screened on {header.backend}; delete it to screen "
                         f"everything again")
        if complete < len(data):
            notes.append(f"dropped a torn last line of {path} (the previous run was killed mid-write)")
        if unreadable:
            first_line, reason = dropped[0]
            notes.append(f"ignored {unreadable} unreadable line{'s' if unreadable != 1 else ''} "
                         f"of {path} (line {first_line}: {reason}); those images are screened again")
        # Cut the torn tail so the next append starts on a fresh line.
        handle.truncate(complete)
        handle.seek(complete)
        journal = cls(path, header, handle, finished, notes)
        journal.fresh = fresh
        return journal

    def append(self, outcomes: Iterable[Outcome]) -> None:
        """Persist outcomes: one write, flushed and fsync'd before returning."""
        lines = [outcome_line(outcome) for outcome in outcomes]
        with watched(self.watch, f"appending to the journal {self.path.name}"):
            self._write_lines(lines)

    def _write_lines(self, lines: list[str]) -> None:
        if not lines:
            return
        # backslashreplace: a name that is not UTF-8 on disk is kept as a JSON \udcXX escape,
        # which reads back as the same name.
        self._handle.write("".join(f"{line}\n" for line in lines).encode("utf-8", "backslashreplace"))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def compact(self, outcomes: Iterable[Outcome]) -> None:
        """Atomically replace the journal with exactly ``outcomes`` (those in the final CSV)."""
        self.close()
        # The count goes first, so a stream is listed (8 bytes an image: the outcomes themselves
        # are in memory anyway); a list given is not copied.
        if not isinstance(outcomes, Sequence):
            outcomes = list(outcomes)
        settled = replace(self.header, settled=len(outcomes))
        lines = itertools.chain([settled.to_json()], (outcome_line(outcome) for outcome in outcomes))
        # Line by line: the text of a 10,000-image journal never sits in memory whole.
        chunks: Iterable[bytes] = (f"{line}\n".encode("utf-8", "backslashreplace") for line in lines)
        if self.watch is not None:
            chunks = self.watch.beating(chunks)  # a large journal on a slow share is moving on
        with watched(self.watch, f"rewriting the journal {self.path.name}"):
            atomic_write_chunks(self.path, chunks)

    def close(self) -> None:
        if not self._handle.closed:
            with watched(self.watch, f"closing the journal {self.path.name}"):
                self._handle.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _os_reason(error: OSError) -> str:
    if error.errno in (errno.ELOOP, errno.EEXIST):
        return "it is a symbolic link (refusing to follow it)"
    return error.strerror or str(error)


def _check_reuse(path: Path, resume: bool, on_bundle_change: str) -> None:
    """Refuse to reuse an existing journal without --resume, or with an unknown bundle-change rule."""
    if not resume:
        raise InputError(f"{path} exists from an earlier run: pass --resume to reuse its "
                         f"results (only new or changed images are screened), or delete it "
                         f"to screen everything again")
    if on_bundle_change not in ON_BUNDLE_CHANGE:
        raise InputError(f"--on-bundle-change must be one of {', '.join(ON_BUNDLE_CHANGE)}, "
                         f"got {on_bundle_change!r}")


def _other_results(found: JournalHeader, header: JournalHeader) -> bool:
    """Whether a journal's results were computed otherwise than this run's would be: by another
    bundle (manifest, TTA), or on another backend."""
    return found != header or found.backend_differs(header)


def _rescreen_note(path: Path, found: JournalHeader, header: JournalHeader) -> str:
    if found != header:
        return (f"{path} holds results of bundle {found.bundle}, this run uses {header.bundle}: screening every "
                f"image again with the new bundle (--on-bundle-change fail stops instead)")
    return (f"{path} holds results screened on {found.backend}, this run uses {header.backend}: screening every "
            f"image again on {header.backend} (--backend {found.backend} reuses them; --on-bundle-change fail "
            f"stops instead)")


def _refusal(path: Path, found: JournalHeader, header: JournalHeader) -> str:
    """The one line of a resume refused (--on-bundle-change fail) over another bundle or backend."""
    if found != header:
        return _other_bundle(path, found, header)
    return (f"{path} holds results screened on {found.backend} but this run uses {header.backend}: pass "
            f"--backend {found.backend} to reuse them, or --on-bundle-change rescreen to screen everything "
            f"on {header.backend}")


def _other_bundle(path: Path, found: JournalHeader, header: JournalHeader) -> str:
    return (f"{path} holds results of bundle {found.describe()} but this run uses {header.describe()}: delete "
            f"it, or pass --on-bundle-change rescreen, to screen everything with this bundle")


def _peek_header(path: Path) -> JournalHeader | None:
    """The header of an existing journal; None when it has none or cannot be read."""
    try:  # never through a planted link: _reopen reports one
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb") as handle:
            first = handle.readline(1 << 20)
    except OSError:
        return None
    return JournalHeader.from_json(first.decode("utf-8", errors="replace")) if first.endswith(b"\n") else None


def _read_outcomes(lines: list[bytes], classes: tuple[str, ...], settled: int = 0,
                   malignant: Sequence[int] | None = None, *,
                   checksummed: bool = False) -> tuple[dict[str, Outcome], list[tuple[int, str]], set[str]]:
    """Outcomes by image path (a later line wins), the dropped lines (line number, reason), and
    the images of the lines after the first ``settled`` (an interrupted run's).

    Every line is checked against the bundle's classes, with ``malignant`` its numbers against
    each other, and its checksum (required with ``checksummed``) against its content
    (screening.journal_lines): one that does not fit is dropped and its image
    screened again, never copied into the CSV. Where an image's later line is dropped, its
    earlier line is kept here; it is reused only if its fingerprint is still the file's
    (pipeline.split_finished), so a file replaced since is screened again.
    """
    finished: dict[str, Outcome] = {}
    dropped: list[tuple[int, str]] = []
    fresh: set[str] = set()
    for number, line in enumerate(lines, start=2):  # line 1 is the header
        try:
            outcome = read_outcome(line, classes, malignant, checksummed=checksummed)
        except BadLine as reason:
            dropped.append((number, str(reason)))
            continue
        finished[outcome.image] = outcome
        if number - 1 > settled:
            fresh.add(outcome.image)
        else:
            fresh.discard(outcome.image)
    return finished, dropped, fresh
