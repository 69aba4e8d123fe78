"""Bad samples: training skips them (logged, counted, replaced), evaluation raises naming the file; bad boxes of a
box-only sample drop that annotation only (logged, counted per reason)."""

import logging

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

from openseed.config import get_cfg
from openseed.data.joint_loader import build_joint_train_loader
from openseed.data.mappers import (
    BadSampleError,
    COCOInstanceLSJMapper,
    COCOPanopticLSJMapper,
    Objects365LSJMapper,
    SkipBadSamples,
    TestMapper,
    build_lsj_augmentation,
)
from openseed.data.mappers.robust import BOX_EMPTY, BOX_NOT_FINITE, BOX_OUTSIDE

H, W = 32, 48


def write_sample(folder, name="img", size=(H, W)):
    h, w = size
    image = np.full((h, w, 3), 90, dtype=np.uint8)
    image[8:24, 8:24] = (250, 0, 0)
    ids = np.full((h, w), 2, dtype=np.uint8)
    ids[8:24, 8:24] = 1
    Image.fromarray(image).save(folder / f"{name}.jpg")
    Image.fromarray(np.stack([ids, 0 * ids, 0 * ids], axis=-1)).save(folder / f"{name}.png")
    return {
        "file_name": str(folder / f"{name}.jpg"), "image_id": 1, "height": h, "width": w,
        "pan_seg_file_name": str(folder / f"{name}.png"),
        "segments_info": [{"id": 1, "category_id": 0, "iscrowd": 0}, {"id": 2, "category_id": 1, "iscrowd": 0}],
        "annotations": [{"bbox": [8, 8, 16, 16], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0}],
    }


def augs():
    return build_lsj_augmentation(image_size=32, min_scale=0.5, max_scale=1.5, random_flip="horizontal")


def panoptic_mapper():
    return COCOPanopticLSJMapper(augmentations=augs(), image_format="RGB", filter_empty_after_crop=True,
                                 num_classes=2)


def boxes_mapper():
    return Objects365LSJMapper(augmentations=augs(), image_format="RGB", filter_empty_after_crop=True,
                               num_classes=2)


@pytest.fixture
def good(tmp_path):
    return write_sample(tmp_path)


def test_good_sample_passes(good):
    assert len(panoptic_mapper()(good)["instances"]) >= 1
    assert len(boxes_mapper()(good)["instances"]) == 1


def test_missing_image_skipped_in_training_raised_in_evaluation(good, tmp_path, caplog):
    missing = dict(good, file_name=str(tmp_path / "nope.jpg"))
    wrapped = SkipBadSamples(panoptic_mapper(), is_train=True, dataset_name="toy")
    with caplog.at_level(logging.WARNING, logger="openseed.data.mappers.robust"):
        assert wrapped(missing) is None
        assert wrapped(missing) is None
    assert wrapped.num_skipped == 2
    assert "nope.jpg" in caplog.text and "2 skipped so far" in caplog.text
    with pytest.raises(BadSampleError, match="nope.jpg: image file not found"):
        TestMapper(min_size=32, max_size=64, image_format="RGB")(missing)
    with pytest.raises(BadSampleError, match="nope.jpg"):
        SkipBadSamples(panoptic_mapper(), is_train=False)(missing)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_or_truncated_image(good, damage):
    path = good["file_name"]
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2] if damage == "truncate" else b"not an image at all" * 10)
    with pytest.raises(BadSampleError, match="img.jpg: image file is corrupt or truncated"):
        TestMapper(min_size=32, max_size=64, image_format="RGB")(good)
    assert SkipBadSamples(boxes_mapper(), is_train=True)(good) is None


def test_panoptic_png_of_another_size(good, tmp_path):
    other = write_sample(tmp_path, "other", size=(H, W + 2))
    with pytest.raises(BadSampleError, match=r"other.png: panoptic PNG is 50×32 \(W×H\) but image .*img.jpg is 48×32"):
        panoptic_mapper()(dict(good, pan_seg_file_name=other["pan_seg_file_name"]))


def test_image_size_differs_from_annotation(good):
    with pytest.raises(BadSampleError, match="img.jpg: image is 48×32 .* annotation says 40×32"):
        boxes_mapper()(dict(good, width=40))
    with pytest.raises(BadSampleError, match="img.jpg"):
        TestMapper(min_size=32, max_size=64, image_format="RGB")(dict(good, height=31))


@pytest.mark.parametrize("bbox,reason", [
    ([60, 8, 10, 10], BOX_OUTSIDE), ([8, -30, 10, 10], BOX_OUTSIDE), ([8, 8, 0, 10], BOX_EMPTY),
    ([8, 8, 10, -1], BOX_EMPTY), ([8, float("nan"), 10, 10], BOX_NOT_FINITE),
    ([8, 8, float("inf"), 10], BOX_NOT_FINITE),
])
def test_bad_box_is_dropped_counted_and_logged_and_the_image_kept(good, bbox, reason, caplog):
    """One degenerate box drops that annotation only (as the official Objects365 mapper drops it after the crop);
    the good box of the same image survives, and the drop is counted per reason and logged with the file."""
    bad = dict(good["annotations"][0], bbox=bbox, category_id=1)
    sample = dict(good, annotations=[bad, good["annotations"][0], bad])
    mapper = boxes_mapper()
    with caplog.at_level(logging.WARNING, logger="openseed.data.mappers.robust"):
        instances = mapper(sample)["instances"]
    assert instances.gt_classes.tolist() == [0]
    assert mapper.dropped.counts == {reason: 2}
    assert f"2 {reason} so far" in caplog.text and "img.jpg: box" in caplog.text
    assert caplog.text.count("dropping an annotation, keeping the image") == 2


def test_dropped_boxes_counted_per_reason_across_samples(good):
    annotations = [dict(good["annotations"][0], bbox=bbox) for bbox in ([8, 8, 0, 10], [60, 8, 10, 10])]
    mapper = boxes_mapper()
    for _ in range(3):
        assert len(mapper(dict(good, annotations=annotations))["instances"]) == 0
    assert mapper.dropped.counts == {BOX_EMPTY: 3, BOX_OUTSIDE: 3}


def test_box_partly_outside_is_clipped_not_dropped(good):
    """A box reaching past the image edge is kept and clipped to the canvas (transform, then clip)."""
    augmentation = build_lsj_augmentation(image_size=48, min_scale=1.0, max_scale=1.0, random_flip="none")
    mapper = Objects365LSJMapper(augmentations=augmentation, image_format="RGB", filter_empty_after_crop=True,
                                 num_classes=2)
    past_edge = dict(good["annotations"][0], bbox=[40, 20, 30, 30])
    instances = mapper(dict(good, annotations=[past_edge]))["instances"]
    np.testing.assert_allclose(instances.gt_boxes.tensor.numpy(), [[40, 20, 48, 48]])
    assert not mapper.dropped.counts


def test_instance_mapper_ignores_the_annotation_bbox(good):
    """The COCO-instance LSJ mapper takes boxes from the masks (as the official mapper), so a degenerate `bbox`
    neither drops the annotation nor the image."""
    mapper = COCOInstanceLSJMapper(augmentations=augs(), image_format="RGB", filter_empty_after_crop=True,
                                   num_classes=2)
    polygon = [[8.0, 8.0, 24.0, 8.0, 24.0, 24.0, 8.0, 24.0]]
    annotation = dict(good["annotations"][0], bbox=[8, 8, 0, float("nan")], segmentation=polygon)
    instances = mapper(dict(good, annotations=[annotation]))["instances"]
    assert instances.gt_classes.tolist() == [0] and instances.gt_masks.any()
    assert not mapper.dropped.counts


def test_unknown_category_ids(good):
    segments = [dict(good["segments_info"][0], category_id=5), good["segments_info"][1]]
    with pytest.raises(BadSampleError, match=r"img.png: unknown category id 5 \(expected a contiguous id \[0, 2\)\)"):
        panoptic_mapper()(dict(good, segments_info=segments))
    with pytest.raises(BadSampleError, match="img.jpg: unknown category id -1"):
        boxes_mapper()(dict(good, annotations=[dict(good["annotations"][0], category_id=-1)]))


def test_segment_id_absent_from_png(good):
    segments = good["segments_info"] + [{"id": 77, "category_id": 0, "iscrowd": 0}]
    with pytest.raises(BadSampleError, match="img.png: segment id 77 of segments_info does not occur in the PNG"):
        panoptic_mapper()(dict(good, segments_info=segments))


def test_crowd_only_or_empty_annotations_are_not_errors(good):
    crowd = [dict(s, iscrowd=1) for s in good["segments_info"]]
    assert len(panoptic_mapper()(dict(good, segments_info=crowd))["instances"]) == 0
    assert len(boxes_mapper()(dict(good, annotations=[]))["instances"]) == 0


def test_joint_loader_replaces_bad_samples(tmp_path):
    records = [dict(write_sample(tmp_path, f"img{i}"), image_id=i) for i in range(3)]
    records.append(dict(records[0], file_name=str(tmp_path / "missing.jpg"), image_id=99))
    name = "tbad_boxes_train"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=["red square", "grey"])
    cfg = get_cfg()
    cfg.DATASETS.TRAIN, cfg.DATASETS.TRAIN_MAPPERS = (name,), ("objects365_lsj",)
    cfg.DATASETS.TRAIN_TASKS, cfg.DATASETS.TRAIN_LOSS_WEIGHTS = ("det",), (1.0,)
    cfg.DATALOADER.TRAIN_IMS_PER_GPU, cfg.DATALOADER.NUM_WORKERS = (4,), 0
    cfg.INPUT.IMAGE_SIZE, cfg.SEED = 32, 0
    iterator = iter(build_joint_train_loader(cfg))
    seen = [d["image_id"] for _ in range(5) for d in next(iterator)[name]]
    assert len(seen) == 20 and 99 not in seen and set(seen) == {0, 1, 2}
