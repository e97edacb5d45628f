"""Tests for screening.pipeline: planning, the bounded decode stream, inference and mask output."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from bundle_factory import lesion_rgb, patient_row, reference_outputs, write_image, write_patients
from screening.backends.bundle import BatchOutputs, BundleBackend
from screening.backends.onnxrt import OnnxRuntimeBackend
from screening.manifest import load_manifest
from screening.metadata import MetaCodes
from screening.patients import read_patients
from screening.pipeline import (Decoded, ImageJob, PipelineOptions, mask_paths, plan_batches, plan_jobs,
                                preprocess, screen_jobs, split_finished, with_digests)
from screening.preprocess import resize_rgb, risk_score, softmax
from screening.results import Outcome


@pytest.fixture(scope="module")
def manifest(tiny_bundle: Path):
    return load_manifest(tiny_bundle)


@pytest.fixture
def backend(tiny_bundle: Path, manifest):
    with OnnxRuntimeBackend(tiny_bundle, manifest, threads=1) as opened:
        yield opened


def job(image: str, manifest, codes: MetaCodes | None = None) -> ImageJob:
    return ImageJob(image, codes or manifest.metadata.unknown_codes())


def run_all(jobs, root: Path, backend, **options) -> list[Outcome]:
    return [o for batch in screen_jobs(jobs, root, backend, PipelineOptions(**options)) for o in batch]


def test_plan_attaches_metadata_rows_and_warns_about_missing_ones(tmp_path: Path, manifest) -> None:
    names = ["a.png", "b.png", "c.png"]
    for i, name in enumerate(names):
        write_image(tmp_path / "img" / name, lesion_rgb(i))
    rows = [patient_row(0, "a"), {**patient_row(1, "b.png"), "age": "", "site": "moon"}]
    table = read_patients(write_patients(tmp_path / "p.csv", rows), images=names)
    jobs = plan_jobs(names, table, manifest.metadata)
    vocab = manifest.metadata
    assert [j.image for j in jobs] == names
    assert jobs[0].patient_id == "P000" and jobs[0].warnings == () and jobs[0].row_key == "a"
    assert jobs[0].meta == vocab.codes(25, "male", "back")[0]
    assert jobs[1].warnings == ("age unknown", "site 'moon' not recognised, used unknown")
    assert jobs[2].row_key is None and jobs[2].meta == vocab.unknown_codes()
    assert jobs[2].warnings == ("no metadata row",)


def test_fingerprint_follows_content_and_metadata(manifest) -> None:
    base = ImageJob("a.png", MetaCodes(1, 0, 2), digest="b2:aa")
    assert base.fingerprint == "b2:aa:1,0,2"
    # only the bytes (their digest) and the encoded metadata count
    changed = {ImageJob("a.png", MetaCodes(1, 0, 2), digest="b2:ab").fingerprint,
               ImageJob("a.png", MetaCodes(2, 0, 2), digest="b2:aa").fingerprint}
    assert base.fingerprint not in changed and len(changed) == 2


def test_split_finished_reuses_only_unchanged_results(tmp_path: Path, manifest) -> None:
    for name in ("a.png", "b.png", "c.png"):
        write_image(tmp_path / name, lesion_rgb(len(name)))
    jobs = with_digests([job(name, manifest) for name in ("a.png", "b.png", "c.png")], tmp_path)
    finished = {"a.png": Outcome("a.png", jobs[0].fingerprint, "ok"),
                "b.png": Outcome("b.png", "other", "ok"),
                "gone.png": Outcome("gone.png", "x", "ok")}
    unhashed = [job(name, manifest) for name in ("a.png", "b.png", "c.png")]
    reused, todo = split_finished(unhashed, finished, root=tmp_path)
    assert list(reused) == ["a.png"] and [j.image for j in todo] == ["b.png", "c.png"]
    # with --save-masks, a result whose mask files are missing is screened again
    reused, todo = split_finished(unhashed, finished, save_masks=tmp_path / "masks", root=tmp_path)
    assert reused == {} and len(todo) == 3


def test_a_replaced_file_with_the_same_size_and_mtime_is_screened_again(tmp_path: Path, manifest) -> None:
    # cp -p / rsync -t / archive extraction: new bytes, same size, same mtime
    path = tmp_path / "a.bmp"
    write_image(path, lesion_rgb(1))
    before = with_digests([job("a.bmp", manifest)], tmp_path)[0]
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one pixel byte of an uncompressed image
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    finished = {"a.bmp": Outcome("a.bmp", before.fingerprint, "ok")}
    reused, todo = split_finished([job("a.bmp", manifest)], finished, root=tmp_path)
    assert reused == {} and [j.image for j in todo] == ["a.bmp"]


def test_an_unreadable_file_never_reuses_a_result(tmp_path: Path, manifest) -> None:
    finished = {"gone.png": Outcome("gone.png", "unread:0,0,0", "error")}
    reused, todo = split_finished([job("gone.png", manifest)], finished, root=tmp_path)
    assert reused == {} and len(todo) == 1


def test_batches_keep_the_grid_of_the_whole_folder_and_are_pulled_lazily(manifest) -> None:
    pulled = []

    def source():
        for i in range(10):
            pulled.append(i)
            yield job(f"{i}.png", manifest)

    batches = plan_batches(source(), 4, done={"1.png", "2.png", "3.png", "5.png"})
    assert [j.image for j in next(batches)] == ["0.png"] and pulled == [0, 1, 2, 3]
    # a resumed run batches 4, 6, 7 together exactly as the uninterrupted run batched 4-7
    assert [[j.image for j in b] for b in batches] == [["4.png", "6.png", "7.png"], ["8.png", "9.png"]]
    assert list(plan_batches([job(f"{i}.png", manifest) for i in range(4)], 2, done={"0.png", "1.png",
                                                                                   "2.png", "3.png"})) == []


@pytest.mark.parametrize("n_images", [40, 200])
def test_in_flight_images_are_bounded_whatever_the_folder_size(tmp_path: Path, manifest, backend,
                                                               n_images: int) -> None:
    write_image(tmp_path / "img_0.png", lesion_rgb(0))
    for i in range(1, n_images):  # hard links: many files, one tiny image on disk
        os.link(tmp_path / "img_0.png", tmp_path / f"img_{i}.png")
    pulled = done = max_in_flight = 0

    def source():
        nonlocal pulled
        for i in range(n_images):
            pulled += 1
            yield job(f"img_{i}.png", manifest)

    for batch in screen_jobs(source(), tmp_path, backend, PipelineOptions(batch_size=4, workers=2, prefetch=2)):
        max_in_flight = max(max_in_flight, pulled - done)
        done += len(batch)
        assert all(o.status == "ok" for o in batch)
    assert done == n_images
    # the batch being inferred plus two decoding ahead, however many images there are
    assert max_in_flight == 3 * 4


def test_outcomes_are_the_models_probabilities(tmp_path: Path, manifest, backend) -> None:
    names = [f"{i}.png" for i in range(5)]
    images = [lesion_rgb(i) for i in range(5)]
    for name, rgb in zip(names, images):
        write_image(tmp_path / name, rgb)
    codes = [manifest.metadata.codes(30 + 10 * i, "female", "back")[0] for i in range(5)]
    outcomes = run_all([job(n, manifest, c) for n, c in zip(names, codes)], tmp_path, backend, batch_size=2)

    pixels = np.stack([resize_rgb(rgb, manifest.input_size) for rgb in images])
    ready = [Decoded(job(n, manifest, c), p, (64, 64), None) for n, c, p in zip(names, codes, pixels)]
    mask, logits = reference_outputs(*preprocess(ready, manifest))
    probabilities = softmax(logits, manifest.temperature)
    assert [o.image for o in outcomes] == names
    for i, outcome in enumerate(outcomes):
        np.testing.assert_allclose(outcome.probabilities, probabilities[i], atol=1e-5)
        assert outcome.probabilities == tuple(round(p, 6) for p in outcome.probabilities)
        assert outcome.risk == pytest.approx(sum(outcome.probabilities[k] for k in manifest.malignant_indices), abs=1e-12)
        assert outcome.risk == pytest.approx(float(risk_score(probabilities[i], [2, 3])), abs=1e-5)
        assert outcome.prediction == manifest.class_names[int(np.argmax(probabilities[i]))]
        assert outcome.confidence == pytest.approx(max(outcome.probabilities), abs=1e-12)
        assert outcome.lesion_area == pytest.approx(float(np.mean(mask[i, 0] > 0.5)), abs=1e-9)
        assert 0.0 < outcome.lesion_area < 1.0


def test_metadata_changes_the_result(tmp_path: Path, manifest, backend) -> None:
    write_image(tmp_path / "a.png", lesion_rgb(3))
    os.link(tmp_path / "a.png", tmp_path / "b.png")
    young = manifest.metadata.codes(15, "female", "face")[0]
    old = manifest.metadata.codes(85, "male", "back")[0]
    a, b = run_all([job("a.png", manifest, young), job("b.png", manifest, old)], tmp_path, backend)
    assert abs(a.risk - b.risk) > 1e-3


def test_bad_images_become_error_outcomes_and_the_run_goes_on(tmp_path: Path, manifest, backend) -> None:
    write_image(tmp_path / "a.png", lesion_rgb(1))
    (tmp_path / "b.jpg").write_bytes(b"")
    (tmp_path / "c.png").write_bytes(b"not an image at all")
    write_image(tmp_path / "d.png", lesion_rgb(2))
    names = ["a.png", "b.jpg", "c.png", "d.png", "missing.png"]
    outcomes = run_all([job(n, manifest) for n in names], tmp_path, backend, batch_size=3)
    assert [(o.image, o.status, o.error) for o in outcomes] == [
        ("a.png", "ok", ""),
        ("b.jpg", "error", "empty file (0 bytes)"),
        ("c.png", "error", "not a readable image (unrecognised file format)"),
        ("d.png", "ok", ""),
        ("missing.png", "error", "cannot read file (No such file or directory)"),
    ]
    assert outcomes[1].probabilities == () and outcomes[1].risk is None


class PoisonedBackend(BundleBackend):
    """The real backend, except that a batch holding an all-white image fails (like a NaN blow-up)."""

    name = "poisoned"

    def __init__(self, inner: BundleBackend) -> None:
        super().__init__(inner.manifest)
        self.inner = inner
        self.batch_sizes: list[int] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def run_batch(self, seg_image, cls_image, meta) -> BatchOutputs:
        self.batch_sizes.append(len(seg_image))
        if (seg_image.reshape(len(seg_image), -1).min(axis=1) > 1.9).any():
            raise RuntimeError("poisoned\ninput")
        return self.inner.run_batch(seg_image, cls_image, meta)


def test_a_failing_batch_is_retried_image_by_image(tmp_path: Path, manifest, backend) -> None:
    for i in range(4):
        write_image(tmp_path / f"{i}.png", lesion_rgb(i))
    write_image(tmp_path / "2.png", np.full((64, 64, 3), 255, np.uint8))
    poisoned = PoisonedBackend(backend)
    outcomes = run_all([job(f"{i}.png", manifest) for i in range(4)], tmp_path, poisoned, batch_size=4)
    assert [o.status for o in outcomes] == ["ok", "ok", "error", "ok"]
    assert outcomes[2].error == "inference failed (RuntimeError: poisoned input)"
    assert outcomes[2].retry  # out of memory or a lost GPU passes: --resume tries it again
    assert not outcomes[0].retry
    assert poisoned.batch_sizes == [4, 1, 1, 1, 1]


class OverflowingBackend(PoisonedBackend):
    """The real backend, except that an all-white image's logits overflow (an FP16 engine's NaN)."""

    def run_batch(self, seg_image, cls_image, meta) -> BatchOutputs:
        outputs = self.inner.run_batch(seg_image, cls_image, meta)
        white = seg_image.reshape(len(seg_image), -1).min(axis=1) > 1.9
        outputs.logits[white] = np.nan
        return outputs


def test_a_nan_model_output_is_a_retried_error_row_not_a_routine_nan_risk(tmp_path: Path, manifest, backend) -> None:
    for i in range(3):
        write_image(tmp_path / f"{i}.png", lesion_rgb(i))
    write_image(tmp_path / "1.png", np.full((64, 64, 3), 255, np.uint8))
    outcomes = run_all([job(f"{i}.png", manifest) for i in range(3)], tmp_path, OverflowingBackend(backend),
                       batch_size=3)
    assert [o.status for o in outcomes] == ["ok", "error", "ok"]
    assert outcomes[1].risk is None and outcomes[1].retry
    assert "not a number" in outcomes[1].error
    assert all(np.isfinite(o.risk) for o in (outcomes[0], outcomes[2]))


def test_save_masks_writes_binary_masks_at_original_size_and_overlays(tmp_path: Path, manifest, backend) -> None:
    root = tmp_path / "img"
    write_image(root / "sub" / "a.jpg", cv2.resize(lesion_rgb(4), (80, 60)))
    write_image(root / "b.png", lesion_rgb(5))
    masks = tmp_path / "masks"
    outcomes = run_all([job("sub/a.jpg", manifest), job("b.png", manifest)], root, backend, save_masks=masks)
    assert [o.status for o in outcomes] == ["ok", "ok"]
    mask_file, overlay_file = mask_paths(masks, "sub/a.jpg")
    assert mask_file == masks / "sub" / "a.jpg.mask.png" and overlay_file == masks / "sub" / "a.jpg.overlay.png"
    mask = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (60, 80) and set(np.unique(mask)) == {0, 255}
    assert abs(np.mean(mask == 255) - outcomes[0].lesion_area) < 0.05
    overlay = cv2.imread(str(overlay_file), cv2.IMREAD_COLOR)
    assert overlay.shape == (60, 80, 3)
    assert ((overlay[:, :, 1] == 255) & (overlay[:, :, 0] == 0) & (overlay[:, :, 2] == 0)).any()  # green contour
    assert all(p.is_file() for p in mask_paths(masks, "b.png"))


def test_a_mask_that_cannot_be_written_is_a_warning_not_an_error(tmp_path: Path, manifest, backend) -> None:
    write_image(tmp_path / "img" / "sub" / "a.png", lesion_rgb(1))
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "sub").write_text("a file where the mask folder should be")
    (outcome,) = run_all([job("sub/a.png", manifest)], tmp_path / "img", backend, save_masks=masks)
    assert outcome.status == "ok" and outcome.risk is not None
    assert len(outcome.warnings) == 1 and outcome.warnings[0].startswith("mask not saved ([Errno 17] File exists")


def test_preprocess_normalises_once_when_both_models_share_statistics(manifest) -> None:
    from dataclasses import replace

    from screening.preprocess import normalise

    pixels = np.stack([resize_rgb(lesion_rgb(i), manifest.input_size) for i in range(2)])
    ready = [Decoded(job(f"{i}.png", manifest), p, (64, 64), None) for i, p in enumerate(pixels)]
    shared = replace(manifest, classifier=replace(manifest.classifier, mean=manifest.segmenter.mean,
                                                   std=manifest.segmenter.std))
    seg, cls, _ = preprocess(ready, shared)
    assert cls is seg
    np.testing.assert_array_equal(seg, normalise(pixels, shared.segmenter.mean, shared.segmenter.std))

    other = replace(manifest, classifier=replace(manifest.classifier, mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.5]))
    seg, cls, _ = preprocess(ready, other)
    np.testing.assert_array_equal(cls, normalise(pixels, [0.1, 0.2, 0.3], [0.5, 0.5, 0.5]))
