"""The Ray Data stages without a cluster: the listing's rows are the single-process grid, the
workers get no patients.csv columns, and --ray's options and missing extra fail clearly."""

from __future__ import annotations

import pickle
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from screening.cli import cli
from screening.errors import InputError
from screening.metadata import MetaCodes
from screening.pipeline import ImageJob, plan_batches

pytest.importorskip("ray", reason="Ray Data is the extra [distributed]")
from screening.distributed.run import RaySettings  # noqa: E402
from screening.distributed.stages import GridListing, _GridChunk  # noqa: E402


def jobs(n: int) -> list[ImageJob]:
    return [ImageJob(f"img_{i:03d}.png", MetaCodes(1, 0, 2), patient_id=f"P{i}",
                     extra={"notes": f"private note {i}"}) for i in range(n)]


def listed(listing: GridListing) -> list[list[str]]:
    """The batches the listing's read tasks produce, after the pickling Ray does, in task order."""
    batches = []
    for task in listing.get_read_tasks(parallelism=1):
        read = pickle.loads(pickle.dumps(task.read_fn))
        for table in read():
            batches += [[job.image for job in pickle.loads(cell)] for cell in table.column("jobs").to_pylist()]
    return batches


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 50), size=st.integers(1, 6), per_read=st.integers(1, 4),
       done=st.sets(st.integers(0, 49)))
def test_listing_rows_are_the_single_process_batches(n: int, size: int, per_read: int, done: set[int]) -> None:
    all_jobs = jobs(n)
    finished = {f"img_{i:03d}.png" for i in done}

    got = listed(GridListing(all_jobs, size, finished, per_read))

    assert got == [[job.image for job in batch] for batch in plan_batches(all_jobs, size, finished)]


def test_workers_get_no_patient_identifiers() -> None:
    chunk = pickle.loads(pickle.dumps(_GridChunk(jobs(3), 2, frozenset())))
    assert [(job.extra, job.patient_id) for job in chunk.jobs] == [({}, "")] * 3
    assert [job.fingerprint for job in chunk.jobs] == [job.fingerprint for job in jobs(3)]


def test_ray_settings_refuse_an_empty_pool() -> None:
    with pytest.raises(InputError, match="--ray-actors must be at least 1, got 0"):
        RaySettings(actors=0)


def test_ray_without_the_extra_says_how_to_install(tmp_path: Path, monkeypatch, make_folder,
                                                   tiny_bundle: Path) -> None:
    images, meta = make_folder(2)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the extra
    result = CliRunner().invoke(cli, ["folder", str(images), "--meta", str(meta), "--out",
                                      str(tmp_path / "r.csv"), "--bundle", str(tiny_bundle), "--ray"])
    assert result.exit_code == 4
    assert result.stderr.strip() == ("Error: Ray is not installed: pip install '.[distributed]' (ray[data]) "
                                     "to use --ray")
    assert not (tmp_path / "r.csv").exists()


# -- a worker's bundle on a drive that stops answering ------------------------------------------------

@pytest.mark.parametrize("file", ["classifier", "segmenter"])
def test_a_workers_bundle_that_stops_answering_ends_with_the_bundles_one_line(tmp_path, tiny_bundle, share, file):
    """A worker reads its own copy of the bundle (to check the driver's sha256s, then to load it):
    on a silent share that gives up after --decode-timeout with the bundle's line, as on one
    machine, instead of holding the actor and the night for ever."""
    from screening.distributed.stages import open_bundle, probe_bundle
    from screening.manifest import load_manifest
    from stalled_share import BUDGET_S, STALL_CAP_S, within

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    manifest = load_manifest(bundle)
    share.stall_open(bundle / getattr(manifest, file).file)
    expected = (f"the model bundle {bundle} stopped answering while it was being read (nothing for "
                f"{BUDGET_S:g} s; a stalled network drive?)")
    with pytest.raises(InputError) as raised:
        within(STALL_CAP_S / 2, lambda: open_bundle(str(bundle), manifest, "onnxruntime", 2, stall_s=BUDGET_S))
    assert str(raised.value).startswith(expected)
    status, kind, message, _ = within(STALL_CAP_S / 2, lambda: probe_bundle(str(bundle), manifest, "onnxruntime", 2,
                                                                             stall_s=BUDGET_S))
    assert (status, kind) == ("error", "InputError") and message.startswith(expected)
