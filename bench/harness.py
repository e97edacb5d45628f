"""Shared plumbing of the bench scripts: worker subprocesses, timing, medians, tables, JSON, data.

Every bench script is a plain file run as ``python bench/NAME.py``; this module sits beside
them (``bench/`` is then first on ``sys.path``). It imports neither torch nor ONNX Runtime, so
a script's parent process stays light and measurements happen only in fresh workers.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RESULTS_DIR = REPO / "bench" / "results"  # git-ignored (bench/.gitignore)
# A 1-minute load average above this (per core) when a run starts means another process is
# competing for the CPU: the figures are recorded but flagged.
BUSY_LOAD_PER_CORE = 0.25
# Last lines of a failed worker's stderr quoted in the error.
STDERR_TAIL_LINES = 15
PACKAGES = ("numpy", "opencv-python-headless", "onnxruntime", "onnx", "torch", "timm",
            "segmentation-models-pytorch")


class BenchError(RuntimeError):
    """A bench run could not produce its figure (a worker failed, an input is missing)."""


def run_main(main: Callable[[], int]) -> None:
    """Exit with ``main()``'s code; a bench or screening error becomes one ``error:`` line."""
    from screening.errors import ScreeningError

    try:
        sys.exit(main())
    except (BenchError, ScreeningError) as exc:
        sys.exit(f"error: {exc}")


# -- inputs ---------------------------------------------------------------------------------------

def default_bundle() -> Path:
    """engines/starter when it has a manifest, else engines/sample."""
    starter = REPO / "engines" / "starter"
    return starter if (starter / "manifest.json").is_file() else REPO / "engines" / "sample"


def add_bundle_and_source(parser: "argparse.ArgumentParser") -> None:
    """The --bundle and --source options of the scripts that screen a real data set."""
    parser.add_argument("--bundle", type=Path, default=None,
                        help="bundle folder (default: engines/starter, else engines/sample)")
    parser.add_argument("--source", type=Path, default=SHARED_DATA / "ham10000_dev",
                        help="data set folder with labels.csv (default: ../shared/data/ham10000_dev)")


def default_out(script: str) -> Path:
    """bench/results/<script>.json."""
    return RESULTS_DIR / f"{script}.json"


@dataclass(frozen=True)
class LabelledImage:
    """One image of a data set with the metadata a patients CSV row needs."""

    path: Path
    age: str
    sex: str
    site: str


def read_dataset(folder: Path) -> list[LabelledImage]:
    """The images of a ../shared/data set (``labels.csv`` with ``file``, ``age``, ``sex``, ``site``).

    Raises:
        BenchError: the folder has no labels.csv.
    """
    labels = Path(folder) / "labels.csv"
    if not labels.is_file():
        raise BenchError(f"no labels.csv in {folder}: is ../shared/data there?")
    with open(labels, newline="", encoding="utf-8") as handle:
        return [LabelledImage(Path(folder) / row["file"], row.get("age", ""), row.get("sex", ""),
                              row.get("site", "")) for row in csv.DictReader(handle)]


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (no disk space, same bytes); copy across file systems."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        shutil.copyfile(source, target)


def replicate(images: Sequence[LabelledImage], count: int, dest: Path) -> tuple[Path, Path]:
    """An images folder of ``count`` files cycling over ``images``, and its patients CSV.

    Copy ``i`` of image ``x.jpg`` is named ``{i:06d}_x.jpg``, so every file is a distinct image
    to the screening run while the bytes (and the decode work) repeat.

    Args:
        images: the source images with their metadata.
        count: files to create; 0 means each source image once.
        dest: an empty or new folder; ``images/`` and ``patients.csv`` are created in it.

    Returns:
        (images folder, patients CSV).
    """
    if not images:
        raise BenchError("no source images to replicate")
    count = count or len(images)
    folder = Path(dest) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = Path(dest) / "patients.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "patient_id", "age", "sex", "site"])
        for index in range(count):
            source = images[index % len(images)]
            name = f"{index:06d}_{source.path.name}"
            link_or_copy(source.path, folder / name)
            writer.writerow([name, f"P{index:06d}", source.age, source.sex, source.site])
    return folder, csv_path


# -- workers ------------------------------------------------------------------------------------

def run_worker(script: Path, spec: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
    """Run ``python script --worker SPEC_JSON`` in a fresh interpreter and return its result.

    A fresh process per measurement keeps libraries apart (PyTorch and ONNX Runtime each bring
    their own thread pools and allocators) and starts every figure from the same state.
    The worker prints its result as the last line of stdout, one JSON object.

    Raises:
        BenchError: the worker failed or printed no result; the message quotes its stderr.
    """
    command = [sys.executable, str(script), "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"worker timed out after {timeout} s: {spec}") from exc
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-STDERR_TAIL_LINES:])
        raise BenchError(f"worker exited with {done.returncode} for {json.dumps(spec)}:\n{tail}")
    return json.loads(lines[-1])


def worker_result(result: dict[str, Any]) -> None:
    """Print a worker's result as the one JSON line :func:`run_worker` reads."""
    print(json.dumps(result), flush=True)


def time_calls(call: Callable[[], Any], *, items: int, warmup: int, repeats: int,
               min_seconds: float) -> list[float]:
    """Items per second of ``call``, one figure per repeat.

    Args:
        call: one unit of work (one batch through a model).
        items: images that one call processes.
        warmup: untimed calls first (allocators, kernel choice, caches).
        repeats: timed runs; each calls at least once and until ``min_seconds`` have passed.
        min_seconds: shortest timed run.
    """
    for _ in range(warmup):
        call()
    rates = []
    for _ in range(repeats):
        calls = 0
        start = time.perf_counter()
        while True:
            call()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        rates.append(calls * items / elapsed)
    return rates


# -- figures and reports -------------------------------------------------------------------------

def spread(values: Iterable[float]) -> dict[str, Any]:
    """Median, min, max and count of a figure's runs."""
    values = [float(v) for v in values]
    if not values:
        return {"median": None, "min": None, "max": None, "runs": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": len(values)}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def cell(value: Any, digits: int = 1) -> str:
    """A table cell: numbers rounded, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned columns (Markdown-compatible pipes)."""
    text_rows = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text_rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in text_rows)])


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, load, OS, Python and package versions."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu": _cpu_model(), "cpus_available": cpus, "cpu_count": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in load],
        "busy": load[0] > BUSY_LOAD_PER_CORE * max(1, cpus),
        "memory_gib": _memory_gib(), "platform": platform.platform(),
        "python": platform.python_version(), "packages": _versions(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def warn_if_busy(machine: dict[str, Any]) -> None:
    """Say on stderr when the CPU was already loaded: such figures are not comparable."""
    if machine["busy"]:
        print(f"warning: load average {machine['load_average_1_5_15'][0]} on {machine['cpus_available']} "
              f"CPUs before the run: unless an earlier bench run just ended, another process is "
              f"using the CPU and these figures are not representative", file=sys.stderr)


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write the report (creating folders) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"report: {path}")


# -- screen folder runs --------------------------------------------------------------------------

@dataclass
class ScreenRun:
    """One ``screen folder`` run in a child process."""

    summary: dict[str, Any]  # the summary JSON the run wrote beside its CSV
    wall_s: float  # the child process from start to exit, interpreter start-up included
    peak_rss_mib: float  # the child's peak resident set size (getrusage ru_maxrss)


def run_screen(images: Path, meta: Path, bundle: Path, output: Path, *, batch_size: int,
               workers: int | None = None, backend: str = "onnxruntime", ort_variant: str = "runtime",
               timeout: float | None = None, extra: Sequence[str] = (),
               env: dict[str, str] | None = None) -> ScreenRun:
    """Run ``python -m screening folder`` as a child process and measure it.

    The peak RSS comes from ``wait4`` on that one child, so earlier children (and this
    process) do not count.

    Args:
        images: the images folder.
        meta: its patients CSV.
        bundle: the model bundle.
        output: the results CSV; it must not have a journal yet (each run starts fresh).
        batch_size, workers, backend: passed to ``screen folder``.
        ort_variant: ONNX Runtime session settings (``ort_variants.py``); other than
            "runtime", the run goes through ``bench/screen_with.py``.
        timeout: seconds before the child is killed.
        extra: more ``screen folder`` arguments (e.g. ``--ray=ADDRESS``).
        env: the child's environment (default: this process's).

    Raises:
        BenchError: the run failed or timed out; the message quotes the end of its log.
    """
    from screening.results import summary_path

    screen = ["-m", "screening"] if ort_variant == "runtime" else \
        [str(REPO / "bench" / "screen_with.py"), ort_variant]
    command = [sys.executable, *screen, "folder", str(images), "--meta", str(meta),
               "--out", str(output), "--bundle", str(bundle), "--backend", backend,
               "--batch-size", str(batch_size), "--quiet"]
    if workers:
        command += ["--workers", str(workers)]
    command += list(extra)
    log = Path(output).with_name(Path(output).name + ".log")
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        timer = threading.Timer(timeout, child.kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            if timer:
                timer.cancel()
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8").strip().splitlines()[-STDERR_TAIL_LINES:])
        raise BenchError(f"screen folder exited with {child.returncode}:\n{tail}")
    summary = json.loads(summary_path(Path(output)).read_text(encoding="utf-8"))
    # ru_maxrss is in KiB on Linux.
    return ScreenRun(summary, wall, usage.ru_maxrss / 1024)
