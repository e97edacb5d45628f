"""Segmentation and classification datasets: shared preprocessing, masks, metadata dropout."""

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from screening.metadata import DEFAULT_VOCABULARY
from screening.preprocess import normalise, resize_mask, resize_rgb
from training.data.dataset import ClassificationDataset, SegmentationDataset
from training.data.errors import DataError

SIZE = (32, 32)
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
CLASSES = ["nv", "mel"]


@pytest.fixture
def index(tmp_path, lesion_writer) -> pd.DataFrame:
    rows = []
    for i, (label, age, sex, site) in enumerate([("nv", 45, "male", "back"), ("mel", np.nan, "female", "face")]):
        image_path, mask_path = lesion_writer(tmp_path, f"IMG_{i}", centre=(20 + 20 * i, 16))
        rows.append({"image_id": f"IMG_{i}", "image_path": str(image_path), "mask_path": str(mask_path),
                     "label": label, "age": age, "sex": sex, "site": site})
    return pd.DataFrame(rows)


def test_segmentation_item_is_the_runtime_preprocessing(index):
    image, mask = SegmentationDataset(index, SIZE, MEAN, STD)[1]
    rgb = cv2.cvtColor(cv2.imread(index.at[1, "image_path"]), cv2.COLOR_BGR2RGB)
    expected = normalise(resize_rgb(rgb, SIZE), MEAN, STD)
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, 32, 32)
    assert np.array_equal(image.numpy(), expected)
    raw_mask = cv2.imread(index.at[1, "mask_path"], cv2.IMREAD_GRAYSCALE)
    assert tuple(mask.shape) == (1, 32, 32) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert np.array_equal(mask[0].numpy(), (resize_mask(raw_mask, SIZE) >= 128).astype(np.float32))


def test_augmentation_is_seeded_and_new_on_every_load(index):
    first = SegmentationDataset(index, SIZE, MEAN, STD, augment=True, seed=4)
    again = SegmentationDataset(index, SIZE, MEAN, STD, augment=True, seed=4)
    image, mask = first[0]
    same_image, same_mask = again[0]
    assert torch.equal(image, same_image) and torch.equal(mask, same_mask)
    # A second load of the same item (the next epoch, with no call from the loop) draws anew.
    assert not torch.equal(mask, first[0][1])
    # Still aligned: the dark pixels of the denormalised image are the mask.
    for _ in range(3):
        image, mask = first[0]
        grey = (image.permute(1, 2, 0).numpy() * np.array(STD) + np.array(MEAN)).mean(axis=2)
        dark, lesion = grey < 0.45, mask[0].numpy() > 0
        assert (dark & lesion).sum() / (dark | lesion).sum() > 0.8


def test_loader_workers_draw_new_augmentations_every_epoch(index):
    data = SegmentationDataset(index.iloc[:1], SIZE, MEAN, STD, augment=True, seed=0)
    for persistent in (False, True):
        torch.manual_seed(0)
        loader = DataLoader(data, batch_size=1, num_workers=1, persistent_workers=persistent)
        epochs = [next(iter(loader))[1] for _ in range(2)]
        assert not torch.equal(epochs[0], epochs[1]), f"persistent_workers={persistent}"


def test_square_size_and_index_read_with_empty_strings(index, tmp_path):
    index.to_csv(tmp_path / "index.csv", index=False)
    # How training.common.read_index reads it: all strings, empty cells as "".
    as_read = pd.read_csv(tmp_path / "index.csv", dtype=str, keep_default_na=False)
    item = ClassificationDataset(as_read, 24, MEAN, STD, DEFAULT_VOCABULARY, CLASSES)[1]
    assert tuple(item["image"].shape) == (3, 24, 24)
    assert np.array_equal(item["meta"].numpy(), DEFAULT_VOCABULARY.encode(None, "female", "face")[0])


def test_segmentation_needs_ground_truth_masks(index):
    index.loc[1, "mask_path"] = np.nan
    with pytest.raises(DataError) as err:
        SegmentationDataset(index, SIZE, MEAN, STD)
    assert str(err.value) == ("1 of 2 index rows have no mask_path (e.g. IMG_1): "
                              "the segmenter trains only on images with a ground-truth mask")


def test_classification_item_fields(index):
    item = ClassificationDataset(index, SIZE, MEAN, STD, DEFAULT_VOCABULARY, CLASSES)[1]
    assert item["label"] == 1
    assert item["meta"].dtype == torch.float32
    assert np.array_equal(item["meta"].numpy(), DEFAULT_VOCABULARY.encode(None, "female", "face")[0])
    assert tuple(item["mask"].shape) == (1, 32, 32) and float(item["mask"].max()) == 1.0
    batch = default_collate([item, item])
    assert tuple(batch["image"].shape) == (2, 3, 32, 32) and batch["label"].tolist() == [1, 1]


def test_predicted_masks_are_read_from_mask_dir_as_probabilities(index, tmp_path):
    mask_dir = tmp_path / "predicted"
    mask_dir.mkdir()
    cv2.imwrite(str(mask_dir / "IMG_0.png"), np.full((48, 64), 102, dtype=np.uint8))
    data = ClassificationDataset(index.iloc[:1], SIZE, MEAN, STD, DEFAULT_VOCABULARY, CLASSES, mask_dir=mask_dir)
    assert torch.allclose(data[0]["mask"], torch.full((1, 32, 32), 0.4))


def test_classification_without_masks_asks_for_mask_dir(index):
    with pytest.raises(DataError, match=r"have no mask_path \(e.g. IMG_0\): pass mask_dir"):
        ClassificationDataset(index.assign(mask_path=np.nan), SIZE, MEAN, STD, DEFAULT_VOCABULARY, CLASSES)


def test_labels_outside_the_classes_are_refused(index):
    with pytest.raises(DataError, match="index labels mel are not among the classes nv, bkl"):
        ClassificationDataset(index, SIZE, MEAN, STD, DEFAULT_VOCABULARY, ["nv", "bkl"])


def test_unreadable_image_names_the_file(index, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    data = SegmentationDataset(index.assign(image_path=str(broken)), SIZE, MEAN, STD)
    with pytest.raises(DataError, match="broken.jpg: cannot read or decode the image"):
        data[0]


def test_metadata_dropout_gives_unknown_at_the_expected_rate(index):
    many = pd.concat([index.iloc[:1]] * 400, ignore_index=True)  # age, sex and site all known
    vocab = DEFAULT_VOCABULARY
    data = ClassificationDataset(many, (8, 8), MEAN, STD, vocab, CLASSES, meta_dropout=0.25, seed=2)
    metas = np.stack([data[i]["meta"].numpy() for i in range(len(data))])
    n_age, n_sex, n_site = vocab.field_sizes
    unknown_columns = [n_age - 1, n_age + n_sex - 1, n_age + n_sex + n_site - 1]
    rates = metas[:, unknown_columns].mean(axis=0)
    assert np.all(np.abs(rates - 0.25) < 0.07), rates
    assert np.all(metas.sum(axis=1) == 3)  # still one value per field
    # Fields drop independently: all three at once is rare (0.25^3 = 1.6 %).
    assert metas[:, unknown_columns].all(axis=1).mean() < 0.05


def test_no_dropout_keeps_known_metadata(index):
    data = ClassificationDataset(index.iloc[:1], SIZE, MEAN, STD, DEFAULT_VOCABULARY, CLASSES)
    expected = DEFAULT_VOCABULARY.encode(45, "male", "back")[0]
    for epoch in range(3):
        data.set_epoch(epoch)
        assert np.array_equal(data[0]["meta"].numpy(), expected)


def test_every_item_knows_its_source_for_source_balanced_sampling(index):
    data = ClassificationDataset(index.assign(source=["ham10000_dev", "isic2019_bcn_msk_84px"]), SIZE, MEAN, STD,
                                 DEFAULT_VOCABULARY, CLASSES)
    assert data.sources == ["ham10000_dev", "isic2019_bcn_msk_84px"]
    assert "source" not in index  # an index without sources is one source
    assert ClassificationDataset(index, SIZE, MEAN, STD, DEFAULT_VOCABULARY, CLASSES).sources == ["", ""]
