"""Batches of preprocessed images and metadata for comparing two backends."""

import numpy as np
import pytest
from engine_helpers import make_manifest, write_images

from screening.engines.samples import iter_batches
from screening.errors import InputError, MetadataError


def test_batches_are_normalised_per_model_with_encoded_metadata(tmp_path):
    write_images(tmp_path / "imgs", 5)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    csv = tmp_path / "patients.csv"
    csv.write_text("image,age,sex,site\nimg_01,45,male,face\n")
    manifest = make_manifest(32)
    skipped = []
    batches = list(iter_batches(tmp_path / "imgs", manifest, 2, csv, skipped=skipped))
    assert [b.names for b in batches] == [["img_00.png", "img_01.png"], ["img_02.png", "img_03.png"], ["img_04.png"]]
    assert len(skipped) == 1 and skipped[0].startswith("broken.jpg: ")
    first = batches[0]
    assert first.seg_image.shape == first.cls_image.shape == (2, 3, 32, 32)
    assert first.seg_image.dtype == first.cls_image.dtype == first.meta.dtype == np.float32
    assert not np.allclose(first.seg_image, first.cls_image)  # different mean/std per model
    vocab = manifest.metadata
    assert np.array_equal(first.meta[0], vocab.encode()[0])  # no row: all unknown
    assert np.array_equal(first.meta[1], vocab.encode(45, "male", "face")[0])


def test_limit_takes_the_first_images_in_screening_order(tmp_path):
    write_images(tmp_path / "b", 2)
    write_images(tmp_path / "a", 1)
    batches = list(iter_batches(tmp_path, make_manifest(32), 8, limit=2))
    assert batches[0].names == ["a/img_00.png", "b/img_00.png"]
    assert np.array_equal(batches[0].meta[1], make_manifest(32).metadata.encode()[0])


def test_empty_folder_and_unusable_csv_fail_before_any_work(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match=f"no images found in {tmp_path}"):
        list(iter_batches(tmp_path, make_manifest(32), 4))
    write_images(tmp_path / "imgs", 1)
    csv = tmp_path / "patients.csv"
    csv.write_text("patient,age\np1,40\n")
    with pytest.raises(MetadataError):
        list(iter_batches(tmp_path / "imgs", make_manifest(32), 4, csv))
