"""TensorRT engines on a network drive that stops answering: the probe (engine folder, build record,
plan files looked up) and the backend's reads (build record, plans) end the command with the
bundle's one line within --decode-timeout (exit 2), as ONNX Runtime's reads of the bundle do,
never a wait for ever. And the build record the probe checked is the one the backend uses.

The stall is simulated as in tests/screening/test_stalled_inputs.py (stalled_share.Share); the GPU
modules are stand-ins (fake_gpu.py), the files are real.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import folder_runner
from engine_helpers import make_manifest
from fake_gpu import fake_plan, write_fake_engines
from stalled_share import BUDGET_S, STALL_CAP_S, screen_on_share, within
from screening.backends import open_backend
from screening.backends.tensorrt import TensorRTBackend
from screening.engines.record import RECORD_NAME
from screening.errors import BundleError, InputError
from screening.manifest import load_manifest

pytestmark = pytest.mark.usefixtures("no_default_bundle")


def bundle_stalled(bundle: Path) -> str:
    return (f"the model bundle {bundle} stopped answering while it was being read (nothing for "
            f"{BUDGET_S:g} s; a stalled network drive?): run the same command again once the drive answers")


def enter(backend: TensorRTBackend) -> None:
    with backend:
        pass


# What the probe looks at on the share: the engine folder (is it there?), its build record, the
# plans (are they all there?).
PROBE_STALLS = [("folder", "stat"), (RECORD_NAME, "open"), ("classifier.plan", "stat")]


def stall(share, folder: Path, what: str, call: str) -> None:
    path = folder if what == "folder" else folder / what
    if call == "open":
        share.stall_open(path)
    else:
        share.stall(path, call)


@pytest.mark.parametrize("choice", ["auto", "tensorrt"])
@pytest.mark.parametrize("what, call", PROBE_STALLS)
def test_a_probe_on_engines_that_do_not_answer_stops_with_the_bundle_line(fake_bundle, fake_gpu, share,
                                                                           choice, what, call):
    """Not a fallback to ONNX Runtime under --backend auto: its models are on the same silent drive."""
    bundle, manifest = fake_bundle
    folder, _ = write_fake_engines(bundle, manifest)
    stall(share, folder, what, call)
    with pytest.raises(InputError) as raised:
        within(STALL_CAP_S / 2, lambda: open_backend(choice, bundle, manifest, batch_size=4, stall_s=BUDGET_S))
    assert str(raised.value) == bundle_stalled(bundle)
    assert share.blocked == [call]


@pytest.mark.parametrize("what", [RECORD_NAME, "segmenter.plan", "classifier.plan"])
def test_entering_on_engines_that_do_not_answer_stops_with_the_bundle_line(fake_bundle, fake_gpu, share, what):
    """The backend's own reads once the probe passed: the record (an engine folder named by the
    caller) or a plan's bytes, on a drive that went silent meanwhile."""
    bundle, manifest = fake_bundle
    folder, _ = write_fake_engines(bundle, manifest)
    named = folder if what == RECORD_NAME else None  # the probe reads the record first otherwise
    share.stall_open(folder / what)
    backend = TensorRTBackend(bundle, manifest, batch_size=4, engine_dir=named, stall_s=BUDGET_S)
    with pytest.raises(InputError) as raised:
        within(STALL_CAP_S / 2, lambda: enter(backend))
    assert str(raised.value) == bundle_stalled(bundle)
    assert share.blocked == ["open"] and fake_gpu.loaded == []
    share.answer()  # the drive is back: the same engines load
    enter(TensorRTBackend(bundle, manifest, batch_size=4, engine_dir=named, stall_s=BUDGET_S))
    assert fake_gpu.loaded == [fake_plan(manifest, "segmenter"), fake_plan(manifest, "classifier")]


@pytest.mark.parametrize("what", [RECORD_NAME, "segmenter.plan"])
def test_a_night_on_tensorrt_engines_that_do_not_answer_stops_with_one_line(tmp_path, tiny_bundle, fake_gpu, share,
                                                                             what):
    """`screen folder --backend auto` (and --check, which probes as the night does) on a bundle whose
    engine folder's drive stopped answering: exit 2, one line, nothing written."""
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    folder, _ = write_fake_engines(bundle, load_manifest(bundle))
    images, meta = folder_runner.small_folder(tmp_path)
    out = tmp_path / "out" / "results.csv"
    out.parent.mkdir()
    share.stall_open(folder / what)
    result = within(STALL_CAP_S / 2, lambda: screen_on_share(images, meta, out, bundle, "--backend", "auto"))
    assert folder_runner.error_line(result, 2) == f"Error: {bundle_stalled(bundle)}"
    assert list(out.parent.iterdir()) == []
    if what == RECORD_NAME:  # --check reads the record only: the plans are read when the night starts
        check = within(STALL_CAP_S / 2, lambda: screen_on_share(images, meta, out, bundle, "--backend", "auto",
                                                                "--check"))
        assert folder_runner.error_line(check, 2) == f"Error: {bundle_stalled(bundle)}"


def test_the_record_the_probe_checked_is_the_record_the_engines_are_loaded_with(fake_bundle, fake_gpu, monkeypatch):
    """An engine folder rebuilt (for another version of the bundle) between the probe's check and the
    backend's start: its new record must not vouch for its new plans under the old manifest."""
    import screening.backends.tensorrt as trt_backend

    bundle, manifest = fake_bundle
    folder, _ = write_fake_engines(bundle, manifest)
    other = make_manifest(seg_sha="e" * 64, cls_sha="f" * 64)  # the bundle's next ONNX files
    checked = trt_backend.find_engine

    def then_rebuilt(*args, **kwargs):
        match = checked(*args, **kwargs)
        write_fake_engines(bundle, other, build="next")  # the same folder, plans and build.json replaced
        return match

    monkeypatch.setattr(trt_backend, "find_engine", then_rebuilt)
    with pytest.raises(BundleError) as raised:
        enter(TensorRTBackend(bundle, manifest, batch_size=4))
    assert str(raised.value) == (f"{folder / 'segmenter.plan'} does not match its build record; "
                                 f"rebuild with: screen engines build --bundle {bundle}")
    assert fake_gpu.loaded == []


def test_a_plan_gone_since_the_probe_is_one_line_with_the_rebuild_command(fake_bundle, fake_gpu, monkeypatch):
    """A build started meanwhile replaces the plans (and removes the record first): not a traceback."""
    import screening.backends.tensorrt as trt_backend

    bundle, manifest = fake_bundle
    folder, _ = write_fake_engines(bundle, manifest)
    checked = trt_backend.find_engine

    def then_removed(*args, **kwargs):
        match = checked(*args, **kwargs)
        (folder / "classifier.plan").unlink()
        return match

    monkeypatch.setattr(trt_backend, "find_engine", then_removed)
    with pytest.raises(BundleError) as raised:
        enter(TensorRTBackend(bundle, manifest, batch_size=4))
    assert str(raised.value) == (f"cannot read {folder / 'classifier.plan'} (No such file or directory); "
                                 f"rebuild with: screen engines build --bundle {bundle}")


def test_the_backend_runs_with_the_record_it_checked(fake_bundle, fake_gpu):
    bundle, manifest = fake_bundle
    folder, record = write_fake_engines(bundle, manifest)
    backend = TensorRTBackend(bundle, manifest, batch_size=4)
    with backend:
        assert backend.engine_dir == folder and backend.record == record
