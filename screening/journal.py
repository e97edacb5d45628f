"""The results journal beside the output, and the lock that keeps two runs off one output.

``results.csv.journal`` is JSON lines: a header naming the bundle (tag and model sha256s),
then one line per finished image, appended and fsync'd once per batch. A run killed at any
point leaves at most a torn last line, which the next ``--resume`` drops. The journal is kept
after the CSV is written (rewritten without stale lines), so that a later ``--resume`` on a
folder that gained images screens only the new ones.

``results.csv.lock`` holds the owner's pid and host; a lock whose process is gone (same host)
is taken over with a warning.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

from .errors import InputError, OutputLocked
from .manifest import Manifest
from .atomic import atomic_write_chunks, fsync_dir
from .results import Outcome

JOURNAL_FORMAT = "screening-journal"
JOURNAL_VERSION = 1


def journal_path(output: Path) -> Path:
    """``results.csv`` -> ``results.csv.journal``."""
    output = Path(output)
    return output.with_name(output.name + ".journal")


def lock_path(output: Path) -> Path:
    """``results.csv`` -> ``results.csv.lock``."""
    output = Path(output)
    return output.with_name(output.name + ".lock")


# -- lock ---------------------------------------------------------------------------------------

def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return False
    return True


_RELEASED = object()  # the lock file vanished between our attempt and reading it
# Locks held by this process: its own pid in a lock file is only stale when not listed here.
_HELD_HERE: set[Path] = set()


class OutputLock:
    """An exclusive lock on one output path; a context manager.

    Acquiring publishes a complete lock file in one step (hard link of a written temp file, or
    O_EXCL where links are unsupported), so another run never reads a half-written lock.
    """

    def __init__(self, output: Path) -> None:
        self.path = lock_path(output)
        self.output = Path(output)
        self.held = False
        self.notes: list[str] = []  # warnings for the user, e.g. a stale lock taken over

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            OutputLocked: a live run (or a run on another host) holds it.
        """
        content = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n"
        # A few tries: a retry follows the removal of a stale lock, or a lock released meanwhile.
        owner = None
        for _ in range(3):
            if self._publish(content.encode()):
                self.held = True
                _HELD_HERE.add(self.path.resolve())
                return
            owner = self._owner()
            if owner is _RELEASED:
                continue
            if owner is None or not self._is_stale(owner):
                break
            self.path.unlink(missing_ok=True)
            self.notes.append(f"took over the lock {self.path} left by process {owner['pid']}, "
                              f"which is no longer running")
        raise OutputLocked(self._locked_message(owner if isinstance(owner, dict) else None))

    def release(self) -> None:
        if self.held:
            _HELD_HERE.discard(self.path.resolve())
            self.path.unlink(missing_ok=True)
            self.held = False

    def _publish(self, content: bytes) -> bool:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(content)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # file system without hard links
            return self._publish_exclusive(content)
        finally:
            tmp.unlink(missing_ok=True)

    def _publish_exclusive(self, content: bytes) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        return True

    def _owner(self) -> dict | object | None:
        """The lock's content, _RELEASED when it vanished, None when it cannot be read."""
        try:
            owner = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _RELEASED
        except (OSError, ValueError):
            return None
        if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
            return None
        return owner

    def _is_stale(self, owner: dict) -> bool:
        if owner.get("host") != socket.gethostname():
            return False  # cannot see processes of another host: assume it is running
        if owner["pid"] == os.getpid():
            # Our pid but not our lock: a previous process with the same pid (a restarted
            # container) left it.
            return self.path.resolve() not in _HELD_HERE
        return not _process_alive(owner["pid"])

    def _locked_message(self, owner: dict | None) -> str:
        who = "another screen run"
        if owner and owner.get("pid"):
            who += f" (pid {owner['pid']} on {owner.get('host', '?')})"
        return (f"{self.output} is being written by {who}: wait for it to finish, or delete "
                f"{self.path} if no such run exists")


# -- journal ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JournalHeader:
    """The first line of a journal: which bundle produced its results."""

    bundle: str  # name@version
    segmenter_sha256: str
    classifier_sha256: str
    classes: tuple[str, ...]

    @classmethod
    def of(cls, manifest: Manifest) -> "JournalHeader":
        return cls(manifest.tag, manifest.segmenter.sha256, manifest.classifier.sha256,
                   tuple(manifest.class_names))

    def to_json(self) -> str:
        data = {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, **asdict(self)}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> "JournalHeader | None":
        """The header in ``line``, or None when it is not a journal header of this version."""
        try:
            data = json.loads(line)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT \
                or data.get("version") != JOURNAL_VERSION:
            return None
        try:
            return cls(str(data["bundle"]), str(data["segmenter_sha256"]),
                       str(data["classifier_sha256"]), tuple(data["classes"]))
        except (KeyError, TypeError):
            return None

    def describe(self) -> str:
        return (f"{self.bundle} (segmenter sha256 {self.segmenter_sha256[:12]}, "
                f"classifier sha256 {self.classifier_sha256[:12]})")


class Journal:
    """Finished outcomes of one output, persisted as they complete.

    Open with :meth:`open` while holding the output's lock. ``finished`` maps image paths to
    the outcomes read back from an earlier run (empty for a fresh journal).
    """

    def __init__(self, path: Path, header: JournalHeader, handle: BinaryIO,
                 finished: dict[str, Outcome], notes: list[str]) -> None:
        self.path = path
        self.header = header
        self._handle = handle
        self.finished = finished
        self.notes = notes  # warnings for the user: torn or unreadable lines dropped

    @classmethod
    def open(cls, output: Path, manifest: Manifest, *, resume: bool) -> "Journal":
        """Open the journal of ``output`` for appending.

        Args:
            output: the results CSV the journal belongs to.
            manifest: the bundle of this run; an existing journal must come from the same one.
            resume: reuse an existing journal; without it an existing journal is an error, so
                that results are never silently reused (or silently thrown away).

        Raises:
            InputError: a journal exists without ``resume``, was written by another bundle, or
                is not a journal.
        """
        path = journal_path(output)
        header = JournalHeader.of(manifest)
        if not path.exists():
            return cls._create(path, header)
        if not resume:
            raise InputError(f"{path} exists from an earlier run: pass --resume to reuse its "
                             f"results (only new or changed images are screened), or delete it "
                             f"to screen everything again")
        return cls._reopen(path, header)

    @classmethod
    def _create(cls, path: Path, header: JournalHeader) -> "Journal":
        handle = open(path, "wb")
        journal = cls(path, header, handle, {}, [])
        journal._write_lines([header.to_json()])
        fsync_dir(path.parent)
        return journal

    @classmethod
    def _reopen(cls, path: Path, header: JournalHeader) -> "Journal":
        data = path.read_bytes()
        complete = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
        lines = data[:complete].split(b"\n")[:-1]
        if not lines:  # killed while writing the header: nothing to reuse
            return cls._create(path, header)
        found = JournalHeader.from_json(lines[0].decode("utf-8", errors="replace"))
        if found is None:
            raise InputError(f"{path} is not a screening journal: delete it or choose another --out")
        if found != header:
            raise InputError(f"{path} holds results of bundle {found.describe()} but this run uses "
                             f"{header.describe()}: delete it to screen everything with this bundle")
        finished, unreadable = _read_outcomes(lines[1:])
        notes = []
        if complete < len(data):
            notes.append(f"dropped a torn last line of {path} (the previous run was killed mid-write)")
        if unreadable:
            notes.append(f"ignored {unreadable} unreadable line{'s' if unreadable != 1 else ''} "
                         f"of {path}; those images are screened again")
        handle = open(path, "r+b")
        # Cut the torn tail so the next append starts on a fresh line.
        handle.truncate(complete)
        handle.seek(complete)
        return cls(path, header, handle, finished, notes)

    def append(self, outcomes: Iterable[Outcome]) -> None:
        """Persist outcomes: one write, flushed and fsync'd before returning."""
        self._write_lines([outcome.to_json() for outcome in outcomes])

    def _write_lines(self, lines: list[str]) -> None:
        if not lines:
            return
        self._handle.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def compact(self, outcomes: Iterable[Outcome]) -> None:
        """Atomically replace the journal with exactly ``outcomes`` (those in the final CSV)."""
        self.close()
        lines = itertools.chain([self.header.to_json()], (outcome.to_json() for outcome in outcomes))
        # Line by line: the text of a 10,000-image journal never sits in memory whole.
        atomic_write_chunks(self.path, (f"{line}\n".encode("utf-8") for line in lines))

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _read_outcomes(lines: list[bytes]) -> tuple[dict[str, Outcome], int]:
    """Outcomes by image path (a later line wins) and the number of unreadable lines."""
    finished: dict[str, Outcome] = {}
    unreadable = 0
    for line in lines:
        try:
            outcome = Outcome.from_json(line.decode("utf-8"))
        except ValueError:  # includes JSON and UTF-8 decoding errors
            unreadable += 1
            continue
        finished[outcome.image] = outcome
    return finished, unreadable
