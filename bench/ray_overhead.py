"""Ray: ``screen folder --ray`` against one process on the same images, memory as the count grows,
and how long the run takes to recover when an inference worker is killed.

A one-node Ray cluster is started here with ``ray start`` (the machine's CPUs, a small object
store), and every ``--ray`` run joins it, so cluster start-up is reported apart from the runs.
Unless ``--cold``, an untimed 16-image ``--ray`` job runs first: Ray Data creates detached helper
actors in the first job on a cluster, which a standing cluster's later jobs reuse. Each run is a
fresh ``python -m screening folder`` child; its peak RSS comes from ``wait4``, and while it runs
the Ray workers' peaks (VmHWM) and the CPU seconds of every process it uses (Ray's daemons and
workers, screen and its decoder children, by role) are sampled from /proc. The overhead goal
is under 20 % on 1,000 images; the CSVs of both runs must be identical but for the run-time
screened_at column. Run it on an otherwise idle machine: the CPU table counts processes by name.

    python bench/ray_overhead.py                          # 1,000 ham10000_dev images
    python bench/ray_overhead.py --counts 1000 10000      # + --ray memory at 10,000 (links, cycled)
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness import (add_bundle_and_source,
                     REPO, BenchError, cell, default_bundle, default_out, format_table,
                     machine_info, read_dataset, replicate, run_main, run_screen, warn_if_busy, write_json)

sys.path.insert(0, str(REPO / "tests" / "screening" / "distributed"))
sys.path.insert(0, str(REPO / "tests" / "screening"))
from csv_compare import rows_without  # noqa: E402  (the tests' comparison: all but screened_at)
from ray_cluster import ENV, RayStartCluster  # noqa: E402  (the tests' cluster starter)

ACTOR = "ScreeningActor"  # in the actor process's title, ray::MapWorker(Map(ScreeningActor))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bundle_and_source(parser)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000],
                        help="images per run; the first is also the overhead and recovery run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the Ray node")
    parser.add_argument("--actors", type=int, default=None, help="--ray-actors (default: screen's)")
    parser.add_argument("--compare-all", action="store_true",
                        help="also run one process at the later counts (default: the first only)")
    parser.add_argument("--no-kill", action="store_true", help="skip the worker-death run")
    parser.add_argument("--cold", action="store_true",
                        help="time the first --ray run on the new cluster (default: a 16-image run goes first, "
                             "as on a cluster that has screened before: Ray Data's detached system actors exist)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds per run")
    parser.add_argument("--out", type=Path, default=default_out("ray_overhead"),
                        help="JSON report (default: bench/results/ray_overhead.json)")
    return parser.parse_args(argv)


# -- watching the Ray workers ---------------------------------------------------------------------

# Which process a command line belongs to, for the CPU-time table: Ray's daemons and workers, the
# screen process (the driver of a --ray run) and its decoder children. The first marker found in
# the command line wins, so "log_monitor" comes before the bare "monitor.py".
ROLES = (("log_monitor", "log_monitor"), ("monitor.py", "autoscaler monitor"), ("dashboard", "dashboard agent"),
         ("runtime_env", "runtime_env agent"), ("screening.decode_pool", "decoder child"),
         ("-m screening folder", "screen (driver)"))
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Process:
    """One process a run uses, as /proc shows it now."""

    title: str  # the first word of its command line (a Ray worker's ray::... title)
    role: str  # role_from's answer
    cpu_s: float  # user + system CPU seconds so far
    start: int  # clock ticks after boot: with the pid, tells a reused pid apart


def role_from(comm: str, cmdline: list[str]) -> str | None:
    """The role of a process with this name and command line, or None for one the runs do not use."""
    if comm in ("raylet", "gcs_server"):
        return comm
    if cmdline and cmdline[0].startswith("ray::"):
        return cmdline[0].split()[0].split(".")[0]
    joined = " ".join(cmdline)
    if "default_worker.py" in joined:
        return "ray worker starting"  # not yet titled ray::IDLE
    return next((role for marker, role in ROLES if marker in joined), None)


def processes() -> dict[int, Process]:
    """pid -> Process for this machine's processes that have a role, in one walk of /proc (a Ray
    worker's title, and so its role, changes with the task it runs)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:  # other processes' entries vanish while we look: skipped
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            comm = (entry / "comm").read_text().strip()
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        role = role_from(comm, cmdline)
        if role is not None:
            found[int(entry.name)] = Process(cmdline[0].strip(), role, (int(stat[11]) + int(stat[12])) / TICKS,
                                             int(stat[19]))
    return found


def uptime_ticks() -> int:
    return int(float(Path("/proc/uptime").read_text().split()[0]) * TICKS)


def peak_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else None


class Watcher(threading.Thread):
    """Samples the Ray workers' peak RSS and every role's CPU seconds; notes when results reach
    the journal; optionally kills the inference actor once ``kill_at`` images are journaled, and
    times the recovery."""

    def __init__(self, journal: Path, kill_at: int | None = None, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.journal, self.kill_at, self.interval = journal, kill_at, interval
        self.peaks: dict[str, float] = {}  # role -> largest peak RSS seen (MiB)
        self._cpu: dict[str, float] = {}  # role -> CPU seconds spent during the run
        self._cpu_seen: dict[tuple[int, int], float] = {}  # (pid, start) -> CPU seconds at the last sample
        self._started_ticks = uptime_ticks()
        self.killed_at: float | None = None
        self.killed_pid: int | None = None
        self.replacement_after_s: float | None = None  # a new actor process exists
        self.resumed_after_s: float | None = None  # the journal grows past its size at the kill
        # Start-up against streaming: when the first result reached the journal, and the last.
        self.started = time.monotonic()
        self.first_result: tuple[float, int] | None = None  # (seconds after start, lines then)
        self.last_result: tuple[float, int] | None = None
        self.stop = threading.Event()

    def _note_progress(self) -> None:
        lines = self.lines()
        if lines > 1:  # the header, then one line per image
            now = (time.monotonic() - self.started, lines)
            if self.first_result is None:
                self.first_result = now
            if self.last_result is None or lines > self.last_result[1]:
                self.last_result = now

    @property
    def first_result_s(self) -> float | None:
        return None if self.first_result is None else round(self.first_result[0], 2)

    @property
    def steady_images_per_s(self) -> float | None:
        """Images/s from the first journaled result to the last: the stream without its start-up."""
        if self.first_result is None or self.last_result is None or self.last_result[0] <= self.first_result[0]:
            return None
        return round((self.last_result[1] - self.first_result[1]) / (self.last_result[0] - self.first_result[0]), 1)

    def _note_cpu(self, found: dict[int, Process]) -> None:
        for pid, process in found.items():
            key = (pid, process.start)
            # Processes that ran before the run (Ray's daemons) count from their first sample;
            # those it started, from 0. Each interval's CPU goes to the role the process has now.
            before = self._cpu_seen.get(key, process.cpu_s if process.start < self._started_ticks else 0.0)
            self._cpu_seen[key] = process.cpu_s
            self._cpu[process.role] = self._cpu.get(process.role, 0.0) + process.cpu_s - before

    @property
    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds each kind of process used during the run (sampled: a process's last
        fraction of a second before it exits is missed)."""
        return {role: round(seconds, 1) for role, seconds in sorted(self._cpu.items(), key=lambda kv: -kv[1])}

    def lines(self) -> int:
        try:
            return self.journal.read_bytes().count(b"\n")
        except OSError:
            return 0

    def run(self) -> None:
        at_kill = 0
        while not self.stop.is_set():
            self._note_progress()
            found = processes()
            self._note_cpu(found)
            workers = {pid: p.title for pid, p in found.items() if p.title.startswith("ray::")}
            for pid in workers:
                peak = peak_mib(pid)
                if peak is not None:
                    role = found[pid].role  # the title's first word, as role_from names Ray workers
                    self.peaks[role] = max(self.peaks.get(role, 0.0), peak)
            if self.kill_at is not None and self.killed_at is None and self.lines() - 1 >= self.kill_at:
                actors = [pid for pid, title in workers.items() if ACTOR in title]
                if actors:
                    self.killed_pid = actors[0]
                    at_kill = self.lines()
                    os.kill(self.killed_pid, signal.SIGKILL)
                    self.killed_at = time.monotonic()
            elif self.killed_at is not None:
                now = time.monotonic() - self.killed_at
                if self.replacement_after_s is None and any(
                        ACTOR in t and p != self.killed_pid for p, t in workers.items()):
                    self.replacement_after_s = now
                if self.resumed_after_s is None and self.replacement_after_s is not None \
                        and self.lines() > at_kill:
                    self.resumed_after_s = now
            self.stop.wait(self.interval)
        self._note_progress()
        self._note_cpu(processes())


def watched(out: Path, screen, kill_at: int | None = None):
    """Run ``screen()`` (a ``screen folder`` child writing ``out``) with its journal watched."""
    watcher = Watcher(out.with_name(out.name + ".journal"), kill_at)
    watcher.start()
    try:
        run = screen()
    finally:
        watcher.stop.set()
        watcher.join()
    return run, watcher


def local_run(images: Path, meta: Path, bundle: Path, out: Path, args: argparse.Namespace):
    """The single-process run, with its journal watched for the time to its first result."""
    return watched(out, lambda: run_screen(images, meta, bundle, out, batch_size=args.batch_size,
                                           timeout=args.timeout))


def ray_run(images: Path, meta: Path, bundle: Path, out: Path, args: argparse.Namespace, address: str,
            kill_at: int | None = None):
    extra = [f"--ray={address}"] + (["--ray-actors", str(args.actors)] if args.actors else [])
    return watched(out, lambda: run_screen(images, meta, bundle, out, batch_size=args.batch_size, extra=extra,
                                           env={**os.environ, **ENV}, timeout=args.timeout), kill_at)


# -- the report -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    warn_if_busy(machine)
    bundle = args.bundle or default_bundle()
    source = read_dataset(args.source)
    report: dict = {"machine": machine, "bundle": str(bundle), "batch_size": args.batch_size,
                    "ray_cpus": args.cpus, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        started = time.monotonic()
        with RayStartCluster(head_cpus=args.cpus) as cluster:
            report["cluster_start_s"] = round(time.monotonic() - started, 1)
            if not args.cold:
                # Ray Data creates three detached actors (stats, autoscaling coordinator, actor
                # locations) in the first job on a cluster and later jobs reuse them: a nightly
                # job on a standing cluster does not pay for them, so the timed runs do not either.
                images, meta = replicate(source, 16, Path(tmp) / "warm-up")
                warm_up, _ = ray_run(images, meta, bundle, Path(tmp) / "warm-up" / "ray.csv", args, cluster.address)
                if not warm_up.summary["backend"].startswith("ray "):
                    raise BenchError(f"the warm-up job did not run on Ray: {warm_up.summary['backend']}")
                report["first_job_16_images_s"] = round(warm_up.wall_s, 2)
            for index, count in enumerate(args.counts):
                work = Path(tmp) / str(count)
                images, meta = replicate(source, count, work)
                # The later counts measure memory only, unless asked: a single-process run of
                # 10,000 images doubles the time for a figure the first count already gives.
                local, local_watch = local_run(images, meta, bundle, work / "local.csv", args) \
                    if index == 0 or args.compare_all else (None, None)
                distributed, watcher = ray_run(images, meta, bundle, work / "ray.csv", args, cluster.address)
                # Identical but for the run-time column screened_at (each run stamps its own).
                identical = None if local is None else \
                    rows_without(work / "local.csv") == rows_without(work / "ray.csv")
                if identical is False:
                    raise BenchError(f"{count} images: the --ray CSV differs from the single-process CSV "
                                     f"(screened_at aside)")
                entry = {"images": count, "local_wall_s": round(local.wall_s, 2) if local else None,
                         "ray_wall_s": round(distributed.wall_s, 2),
                         "overhead": distributed.wall_s / local.wall_s - 1.0 if local else None,
                         "local_peak_rss_mib": round(local.peak_rss_mib, 1) if local else None,
                         "driver_peak_rss_mib": round(distributed.peak_rss_mib, 1),
                         "worker_peak_rss_mib": {k: round(v, 1) for k, v in sorted(watcher.peaks.items())},
                         "ray_backend": distributed.summary["backend"], "csv_identical": identical,
                         # Start-up (until the first result is journaled) apart from streaming.
                         "local_first_result_s": local_watch.first_result_s if local_watch else None,
                         "ray_first_result_s": watcher.first_result_s,
                         "local_steady_images_per_s": local_watch.steady_images_per_s if local_watch else None,
                         "ray_steady_images_per_s": watcher.steady_images_per_s,
                         "local_cpu_s": local_watch.cpu_by_role if local_watch else None,
                         "ray_cpu_s": watcher.cpu_by_role}
                if index == 0 and not args.no_kill:
                    killed, kill = ray_run(images, meta, bundle, work / "killed.csv", args, cluster.address,
                                           kill_at=count // 3)
                    if kill.killed_at is None:
                        raise BenchError("the run ended before its inference actor could be killed")
                    entry["kill"] = {"killed_after_images": count // 3, "wall_s": round(killed.wall_s, 2),
                                     "replacement_actor_after_s": kill.replacement_after_s,
                                     "journal_grows_again_after_s": kill.resumed_after_s,
                                     "csv_identical": rows_without(work / "killed.csv")
                                     == rows_without(work / "local.csv")}
                report["runs"].append(entry)
    print(f"Ray cluster start (ray start, {args.cpus} CPUs): {report['cluster_start_s']} s" +
          ("" if args.cold else f"; its first job (16 images, untimed warm-up): {report['first_job_16_images_s']} s"))
    rows = [[e["images"], cell(e["local_wall_s"]), cell(e["ray_wall_s"]),
             "" if e["overhead"] is None else f"{100 * e['overhead']:+.1f} %",
             cell(e["local_peak_rss_mib"]), cell(e["driver_peak_rss_mib"]),
             ", ".join(f"{k} {cell(v)}" for k, v in e["worker_peak_rss_mib"].items())] for e in report["runs"]]
    print(format_table(["images", "1 process s", "--ray s", "overhead", "1 process MiB", "driver MiB",
                        "worker peaks MiB"], rows))
    print(format_table(["images", "1 process: first result s", "--ray: first result s",
                        "1 process: steady images/s", "--ray: steady images/s"],
                       [[e["images"], cell(e["local_first_result_s"]), cell(e["ray_first_result_s"]),
                         cell(e["local_steady_images_per_s"]), cell(e["ray_steady_images_per_s"])]
                        for e in report["runs"]]))
    for entry in report["runs"]:
        for mode in ("local", "ray"):
            if entry[f"{mode}_cpu_s"]:
                spent = entry[f"{mode}_cpu_s"]
                print(f"{entry['images']} images, {'one process' if mode == 'local' else '--ray'}: CPU seconds "
                      f"{sum(spent.values()):.1f} = " + ", ".join(f"{role} {seconds}" for role, seconds in spent.items()))
    for entry in report["runs"]:
        if "kill" in entry:
            kill = entry["kill"]
            print(f"Inference actor killed after {kill['killed_after_images']} images: replacement actor "
                  f"after {cell(kill['replacement_actor_after_s'])} s, journal growing again after "
                  f"{cell(kill['journal_grows_again_after_s'])} s; run {cell(kill['wall_s'])} s "
                  f"(vs {cell(entry['ray_wall_s'])} s); CSV identical: {kill['csv_identical']}")
    write_json(args.out, report)
    return 0


if __name__ == "__main__":
    run_main(main)
