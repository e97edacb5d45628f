"""Journal cost: writing and reading back a 10,000-line journal, what each line's checksum adds.

Times, on synthetic outcomes shaped like a HAM10000 night (7 classes, rounded probabilities, a
warning on one image in ten): ``Journal.compact`` (the rewrite a finished run makes: every line
built, written and fsync'd once), ``Journal.open(resume=True)`` (what ``--resume`` reads) and
``journal_lines.outcome_lines`` (what ``screen report`` and ``screen evaluate`` read). Minimum
and median of the passes, in ms per journal and microseconds per line.

Where the checksums exist, it also times one line at a time, interleaved in one process (robust
on a shared CPU): built by ``Outcome.to_json`` (the writer before) against ``outcome_line``, and
read by ``read_outcome`` without a checksum against with one.

The whole-journal steps use only what every version has (``compact``, ``open``, ``outcome_lines``), so the same
script times the code before a change: put that code's ``screening`` first on PYTHONPATH::

    python bench/journal_cost.py                          # this tree
    git archive d87257f screening | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before python bench/journal_cost.py   # the code before line checksums
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from harness import default_out, machine_info, run_main, warn_if_busy, write_json
from screening import journal_lines
from screening.journal import Journal, JournalHeader, journal_path
from screening.results import OK, Outcome

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
MALIGNANT = (0, 1, 4)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000, help="outcome lines (default: 10,000)")
    parser.add_argument("--repeats", type=int, default=9, help="timed passes of each step (default: 9)")
    parser.add_argument("--out", type=Path, default=default_out("journal_cost"),
                        help="JSON report (default: bench/results/journal_cost.json)")
    return parser.parse_args(argv)


def stand_in_manifest() -> SimpleNamespace:
    """What the journal reads of a manifest (its header's fields), without a bundle on disk."""
    return SimpleNamespace(identity="bench@1.0+00000000", segmenter=SimpleNamespace(sha256="1" * 64),
                           classifier=SimpleNamespace(sha256="2" * 64), class_names=list(CLASSES),
                           digest="3" * 64, malignant_indices=list(MALIGNANT))


def outcomes(n: int) -> list[Outcome]:
    made = []
    for i in range(n):
        weights = [((i * 7 + k * 13) % 17) + 1 for k in range(len(CLASSES))]
        probabilities = tuple(round(w / sum(weights), 6) for w in weights)
        best = max(range(len(CLASSES)), key=probabilities.__getitem__)
        made.append(Outcome(
            image=f"site{i % 3}/ISIC_{i:07d}.jpg", fingerprint=f"b2:{i:032x}:2,0,{i % 5}", status=OK,
            probabilities=probabilities, risk=sum(probabilities[k] for k in MALIGNANT),
            prediction=CLASSES[best], confidence=probabilities[best], lesion_area=round((i % 100) / 100, 6),
            warnings=("image is blurred",) if i % 10 == 0 else (), screened_at="2026-12-01T02:00:00Z"))
    return made


def timed(step: Callable[[], Any], repeats: int) -> list[float]:
    step()  # warm: imports, page cache
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        passes.append(time.perf_counter() - start)
    return passes


def read_lines(data: bytes, header: JournalHeader) -> list:
    """``outcome_lines`` as the report reads it, with the checksum promise where this version has one."""
    promised = {"checksummed": bool(header.line_checksum)} if hasattr(header, "line_checksum") else {}
    return list(journal_lines.outcome_lines(data, tuple(header.classes), header.malignant or None, **promised))


def per_line(written: list[Outcome], repeats: int) -> dict[str, float]:
    """Microseconds per line, minimum over ``repeats`` interleaved passes of each way."""
    classes, plain = list(CLASSES), [o.to_json().encode() for o in written]
    summed = [journal_lines.outcome_line(o).encode() for o in written]
    ways = {"built without checksum (Outcome.to_json)": lambda: [o.to_json() for o in written],
            "built with checksum (outcome_line)": lambda: [journal_lines.outcome_line(o) for o in written],
            "read without checksum": lambda: [journal_lines.read_outcome(line, classes, MALIGNANT) for line in plain],
            "read with checksum": lambda: [journal_lines.read_outcome(line, classes, MALIGNANT, checksummed=True)
                                           for line in summed]}
    best = {name: float("inf") for name in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            start = time.perf_counter()
            way()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: 1e6 * seconds / len(written) for name, seconds in best.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    warn_if_busy(machine)
    manifest, written = stand_in_manifest(), outcomes(args.lines)
    checksums = "checksummed" in inspect.signature(journal_lines.outcome_lines).parameters
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "results.csv"
        journal = Journal.open(out, manifest, resume=False)

        def write() -> None:
            journal.compact(written)

        def resume() -> None:
            with Journal.open(out, manifest, resume=True) as again:
                assert len(again.finished) == args.lines and not again.notes, again.notes

        write()
        data = journal_path(out).read_bytes()
        header = JournalHeader.from_json(journal_lines.header_line(data).decode())
        steps = {"write (Journal.compact)": timed(write, args.repeats),
                 "read for --resume (Journal.open)": timed(resume, args.repeats),
                 "read for report/evaluate (outcome_lines)": timed(lambda: read_lines(data, header), args.repeats)}
        size = len(journal_path(out).read_bytes())
    print(f"{args.lines} lines, {size / 1e6:.2f} MB, line checksums: {'yes' if checksums else 'no'}")
    report: dict[str, Any] = {"lines": args.lines, "bytes": size, "line_checksums": checksums, "steps": {},
                              "machine": machine}
    for name, passes in steps.items():
        best, median = min(passes), statistics.median(passes)
        report["steps"][name] = {"min_s": best, "median_s": median, "passes_s": passes}
        print(f"  {name:42s} min {1e3 * best:7.1f} ms ({1e6 * best / args.lines:5.1f} us/line), "
              f"median {1e3 * median:7.1f} ms")
    if checksums:
        report["per_line_us"] = per_line(written, args.repeats)
        for name, micros in report["per_line_us"].items():
            print(f"  one line, {name:40s} {micros:5.1f} us")
    write_json(args.out, report)
    return 0


if __name__ == "__main__":
    run_main(main)
