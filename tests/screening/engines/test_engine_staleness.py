"""Finding the engine for this machine and saying in one line why it cannot be used."""

import dataclasses

from engine_helpers import H100, TRT, make_record, write_engine_folder

from screening.engines.naming import GpuInfo, engine_key
from screening.engines.record import RECORD_NAME
from screening.engines.staleness import find_engine, list_engines, stale_reasons

L4 = GpuInfo("NVIDIA L4", (8, 9))
KEY = engine_key(H100, TRT)


def test_fresh_engine_is_found(fake_bundle):
    bundle, manifest = fake_bundle
    folder = write_engine_folder(bundle, make_record(manifest))
    match = find_engine(bundle, manifest, H100, TRT)
    assert (match.engine_dir, match.reason) == (folder, "")
    assert match.record.max_batch == 8


def test_changed_onnx_makes_the_engine_stale_with_the_rebuild_command(fake_bundle):
    bundle, manifest = fake_bundle
    record = make_record(manifest)
    old = dataclasses.replace(record.models["classifier"], onnx_sha256="0123456789ab" + "f" * 52)
    write_engine_folder(bundle, dataclasses.replace(record, models={**record.models, "classifier": old}))
    match = find_engine(bundle, manifest, H100, TRT)
    assert match.engine_dir is None
    assert match.reason == (
        f"TensorRT engine {KEY} is stale (classifier.onnx changed since the build "
        f"(sha256 0123456789ab then, {manifest.classifier.sha256[:12]} now)); "
        f"rebuild with: screen engines build --bundle {bundle}")


def test_tensorrt_and_gpu_mismatches_in_the_record_are_reasons(fake_bundle):
    _, manifest = fake_bundle
    record = make_record(manifest, gpu=L4, trt="10.12.0.36")
    assert stale_reasons(record, manifest, H100, TRT) == [
        "built with TensorRT 10.12.0.36, this machine has TensorRT 10.13.0.35",
        "built for NVIDIA L4 (sm89), this machine has NVIDIA H100 80GB HBM3 (sm90)",
    ]
    assert stale_reasons(make_record(manifest), manifest, H100, TRT) == []


def test_changed_manifest_input_shapes_are_a_reason(fake_bundle):
    _, manifest = fake_bundle
    record = make_record(manifest)
    seg = dataclasses.replace(manifest.segmenter, inputs={"image": ["N", 3, 32, 32]})
    assert stale_reasons(record, dataclasses.replace(manifest, segmenter=seg), H100, TRT) == [
        "the manifest's segmenter input shapes changed since the build"]


def test_engines_for_another_gpu_only_are_named(fake_bundle):
    bundle, manifest = fake_bundle
    write_engine_folder(bundle, make_record(manifest, gpu=L4), gpu=L4)
    match = find_engine(bundle, manifest, H100, TRT)
    assert match.reason == (
        "no TensorRT engine for this machine (NVIDIA H100 80GB HBM3 (sm90), TensorRT 10.13.0.35); the bundle has "
        "engines for nvidia-l4-sm89-trt10.13.0.35-fp16 only; "
        f"build one with: screen engines build --bundle {bundle}")


def test_bundle_without_engines(fake_bundle):
    bundle, manifest = fake_bundle
    assert find_engine(bundle, manifest, H100, TRT).reason == (
        "no TensorRT engines built for this bundle yet (NVIDIA H100 80GB HBM3 (sm90), TensorRT 10.13.0.35); "
        f"build them with: screen engines build --bundle {bundle}")


def test_interrupted_build_and_missing_plan(fake_bundle):
    bundle, manifest = fake_bundle
    folder = write_engine_folder(bundle, make_record(manifest))
    (folder / "classifier.plan").unlink()
    assert find_engine(bundle, manifest, H100, TRT).reason == (
        f"TensorRT engine {KEY} is incomplete (classifier.plan missing); "
        f"rebuild with: screen engines build --bundle {bundle}")
    (folder / RECORD_NAME).unlink()
    assert find_engine(bundle, manifest, H100, TRT).reason == (
        f"TensorRT engine {KEY} has no build.json (an interrupted build); "
        f"rebuild with: screen engines build --bundle {bundle}")


def test_list_marks_the_engine_that_fits(fake_bundle):
    bundle, manifest = fake_bundle
    write_engine_folder(bundle, make_record(manifest))
    write_engine_folder(bundle, make_record(manifest, gpu=L4), gpu=L4)
    (bundle / "trt" / "half-built").mkdir()
    entries = list_engines(bundle, manifest, H100, TRT)
    assert [(e.key, e.status, e.fits) for e in entries] == [
        ("half-built", "incomplete: no readable build.json", False),
        (KEY, "fits this machine", True),
        ("nvidia-l4-sm89-trt10.13.0.35-fp16", "for another GPU or TensorRT version", False),
    ]


def test_list_without_tensorrt_or_gpu_knowledge(fake_bundle):
    bundle, manifest = fake_bundle
    write_engine_folder(bundle, make_record(manifest))
    assert [e.status for e in list_engines(bundle, manifest, H100, None)] == [
        "built for this GPU; TensorRT is not installed here"]
    assert [e.status for e in list_engines(bundle, manifest, L4, None)] == ["for another GPU"]
    assert [e.status for e in list_engines(bundle, manifest, None, None)] == [
        "unknown: this machine's GPU cannot be determined"]
    assert list_engines(bundle.parent / "other", manifest, H100, TRT) == []
