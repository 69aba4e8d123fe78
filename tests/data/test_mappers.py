"""LSJ / Objects365 / test mappers on hand-made images with known geometry.

The image is 128×256 (H×W) with a thing rectangle A (x 64..127, y 32..95), a small thing B (x 0..31, y 0..31), a crowd
region (x 160..223, y 32..95) and stuff elsewhere. With IMAGE_SIZE 64 and scale 1 the image is resized by 1/4 to
32×64; PIL's nearest neighbour samples source pixel 4j + 2 for target pixel j, so A becomes x 16..31, y 8..23.
"""

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from PIL import Image

from openseed.config import get_cfg
from openseed.data.mappers import (
    COCOInstanceLSJMapper,
    COCOPanopticLSJMapper,
    Objects365LSJMapper,
    TestMapper,
    build_lsj_augmentation,
    build_mapper,
    masks_to_boxes,
)

H, W, S = 128, 256, 64
A, B, CROWD = (64, 128, 32, 96), (0, 32, 0, 32), (160, 224, 32, 96)  # x0, x1, y0, y1 (exclusive ends)
COLOURS = {"stuff": (50, 60, 70), "A": (200, 10, 10), "B": (10, 200, 10), "crowd": (10, 10, 200)}


def rect(h, w, box):
    x0, x1, y0, y1 = box
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def id_to_rgb(ids):
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


@pytest.fixture
def sample(tmp_path):
    image = np.empty((H, W, 3), dtype=np.uint8)
    image[:] = COLOURS["stuff"]
    ids = np.full((H, W), 40, dtype=np.int64)
    for name, box, segment_id in (("A", A, 10), ("B", B, 20), ("crowd", CROWD, 30)):
        image[rect(H, W, box)] = COLOURS[name]
        ids[rect(H, W, box)] = segment_id
    Image.fromarray(image).save(tmp_path / "image.png")
    Image.fromarray(id_to_rgb(ids)).save(tmp_path / "pan.png")
    segments = [{"id": 10, "category_id": 0, "iscrowd": 0}, {"id": 20, "category_id": 1, "iscrowd": 0},
                {"id": 30, "category_id": 0, "iscrowd": 1}, {"id": 40, "category_id": 2, "iscrowd": 0}]
    annotations = [
        {"bbox": [64, 32, 64, 64], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0,
         "segmentation": [[64, 32, 128, 32, 128, 96, 64, 96]]},
        {"bbox": [0, 0, 32, 32], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1, "iscrowd": 0,
         "segmentation": mask_util.encode(np.asfortranarray(rect(H, W, B).astype(np.uint8)))},
        {"bbox": [160, 32, 64, 64], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 1,
         "segmentation": [[160, 32, 224, 32, 224, 96, 160, 96]]},
    ]
    return {"file_name": str(tmp_path / "image.png"), "image_id": 7, "height": H, "width": W,
            "pan_seg_file_name": str(tmp_path / "pan.png"), "segments_info": segments, "annotations": annotations}


def lsj(scale, flip):
    augs = build_lsj_augmentation(image_size=S, min_scale=scale, max_scale=scale, random_flip="none")
    return ([T.RandomFlip(prob=1.0)] if flip else []) + augs


def panoptic_mapper(scale=1.0, flip=False, filter_empty=True):
    return COCOPanopticLSJMapper(augmentations=lsj(scale, flip), image_format="RGB",
                                 filter_empty_after_crop=filter_empty, num_classes=3)


def expected_crop_offset(seed, max_offset, draws_before):
    """FixedSizeCrop draws U(0,1) after `draws_before` other np.random draws: offset = round(max_offset * u)."""
    np.random.seed(seed)
    return int(np.round(max_offset * np.random.uniform(size=draws_before + 1)[-1]))


def test_panoptic_lsj_scale_one_geometry_classes_and_padding(sample):
    out = panoptic_mapper()(sample)
    image, instances = out["image"], out["instances"]
    assert image.dtype == torch.uint8 and image.shape == (3, S, S)
    assert instances.image_size == (S, S)
    assert instances.gt_classes.tolist() == [0, 1, 2]  # crowd dropped, A, B, stuff in segments_info order
    assert instances.gt_masks.dtype == torch.bool and instances.gt_masks.shape == (3, S, S)
    np.testing.assert_array_equal(instances.gt_masks[0].numpy(), rect(S, S, (16, 32, 8, 24)))
    np.testing.assert_array_equal(instances.gt_masks[1].numpy(), rect(S, S, (0, 8, 0, 8)))
    crowd_small = rect(S, S, (40, 56, 8, 24))
    stuff = rect(S, S, (0, 64, 0, 32)) & ~instances.gt_masks[0].numpy() & ~instances.gt_masks[1].numpy()
    np.testing.assert_array_equal(instances.gt_masks[2].numpy(), stuff & ~crowd_small)  # crowd pixels: unlabelled
    assert instances.gt_boxes.tensor.tolist() == [[16, 8, 32, 24], [0, 0, 8, 8], [0, 0, 64, 32]]
    assert (image[:, 32:, :] == 128).all()  # padded rows: image value 128, no segment
    assert image[:, 16, 24].tolist() == list(COLOURS["A"])
    assert out["height"] == H and out["width"] == W and out["image_id"] == 7
    assert set(out) == {"image", "instances", "height", "width", "file_name", "image_id"}


def test_panoptic_lsj_flip(sample):
    instances = panoptic_mapper(flip=True)(sample)["instances"]
    assert instances.gt_boxes.tensor[:2].tolist() == [[32, 8, 48, 24], [56, 0, 64, 8]]
    np.testing.assert_array_equal(instances.gt_masks[0].numpy(), rect(S, S, (32, 48, 8, 24)))


@pytest.mark.parametrize("filter_empty", [True, False])
def test_panoptic_lsj_crop_and_empty_after_crop(sample, filter_empty):
    seed = next(s for s in range(100) if expected_crop_offset(s, 64, 1) >= 16)  # B (x 0..15 after resize) cut away
    offset = expected_crop_offset(seed, 64, 1)
    np.random.seed(seed)
    instances = panoptic_mapper(scale=2.0, filter_empty=filter_empty)(sample)["instances"]
    # scale 2: target 128², factor 0.5 → 64×128, source pixel 2j + 1; A → x 32..63, y 16..47; crop x offset, y 0
    a_box = [max(32 - offset, 0), 16, 64 - offset, 48]
    if filter_empty:
        assert instances.gt_classes.tolist() == [0, 2]
        assert instances.gt_boxes.tensor[0].tolist() == a_box
    else:
        assert instances.gt_classes.tolist() == [0, 1, 2]
        assert instances.gt_boxes.tensor[:2].tolist() == [a_box, [0, 0, 0, 0]]
        assert not instances.gt_masks[1].any()
    assert instances.gt_masks[0].sum() == (a_box[2] - a_box[0]) * 32


def test_instance_lsj_polygons_and_rle_match_panoptic(sample):
    out = COCOInstanceLSJMapper(augmentations=lsj(1.0, True), image_format="RGB", filter_empty_after_crop=True,
                                num_classes=3)(sample)
    instances = out["instances"]
    assert instances.gt_classes.tolist() == [0, 1]  # crowd dropped
    assert instances.gt_boxes.tensor.tolist() == [[32, 8, 48, 24], [56, 0, 64, 8]]
    np.testing.assert_array_equal(instances.gt_masks[0].numpy(), rect(S, S, (32, 48, 8, 24)))
    np.testing.assert_array_equal(instances.gt_masks[1].numpy(), rect(S, S, (56, 64, 0, 8)))


def o365_mapper(scale=1.0, flip=False):
    return Objects365LSJMapper(augmentations=lsj(scale, flip), image_format="RGB", filter_empty_after_crop=True,
                               num_classes=3)


def test_objects365_lsj_boxes_scale_flip_and_crop(sample):
    out = o365_mapper()(sample)
    assert not out["instances"].has("gt_masks") and out["instances"].image_size == (S, S)
    assert out["instances"].gt_classes.tolist() == [0, 1]  # crowd dropped
    assert out["instances"].gt_boxes.tensor.tolist() == [[16, 8, 32, 24], [0, 0, 8, 8]]
    flipped = o365_mapper(flip=True)(sample)["instances"]
    assert flipped.gt_boxes.tensor.tolist() == [[32, 8, 48, 24], [56, 0, 64, 8]]
    seed = next(s for s in range(100) if 33 <= expected_crop_offset(s, 64, 1) <= 47)  # A clipped at x = 0
    offset = expected_crop_offset(seed, 64, 1)
    np.random.seed(seed)
    cropped = o365_mapper(scale=2.0)(sample)["instances"]
    assert cropped.gt_classes.tolist() == [0]  # B (x 0..16 at scale 0.5) cropped away and removed
    assert cropped.gt_boxes.tensor.tolist() == [[0, 16, 64 - offset, 48]]


def test_empty_annotation_lists_give_empty_instances(sample):
    sample = dict(sample, segments_info=[], annotations=[])
    for mapper in (panoptic_mapper(), o365_mapper()):
        instances = mapper(sample)["instances"]
        assert len(instances) == 0 and instances.gt_boxes.tensor.shape == (0, 4)
    assert panoptic_mapper()(sample)["instances"].gt_masks.shape == (0, S, S)


def test_mappers_from_config_use_input_keys(sample):
    cfg = get_cfg()
    cfg.INPUT.IMAGE_SIZE, cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE, cfg.INPUT.RANDOM_FLIP = 64, 1.0, 1.0, "none"
    for name in ("coco_panoptic_lsj", "objects365_lsj", "object365", "coco_instance_lsj"):
        out = build_mapper(name, cfg)(sample)
        assert out["image"].shape == (3, 64, 64) and (out["image"][:, 32:] == 128).all()
        assert out["instances"].gt_boxes.tensor[0].tolist() == [16, 8, 32, 24]
    with pytest.raises(ValueError, match="training mapper"):
        build_mapper("coco_panoptic_lsj", cfg, is_train=False)
    with pytest.raises(KeyError, match="unknown dataset mapper"):
        build_mapper("no_such_mapper", cfg)


def test_test_mapper_resizes_shortest_edge(sample):
    out = TestMapper(min_size=64, max_size=1000, image_format="RGB")(sample)
    assert out["image"].shape == (3, 64, 128) and out["height"] == H and out["width"] == W
    assert "annotations" not in out and out["pan_seg_file_name"] == sample["pan_seg_file_name"]
    capped = TestMapper(min_size=64, max_size=100, image_format="RGB")(sample)
    assert capped["image"].shape == (3, 50, 100)
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 32, 1333
    assert build_mapper("test", cfg, is_train=False)(sample)["image"].shape == (3, 32, 64)


def test_masks_to_boxes_matches_detectron2_convention():
    masks = np.zeros((3, 10, 12), dtype=bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 9, 11] = True
    np.testing.assert_array_equal(masks_to_boxes(masks), [[3, 2, 9, 5], [11, 9, 12, 10], [0, 0, 0, 0]])


def maskformer_cfg(divisibility=48, crop=False):
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.RANDOM_FLIP = (64,), 1000, "none"
    cfg.INPUT.SIZE_DIVISIBILITY = divisibility
    cfg.INPUT.CROP.ENABLED, cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE = crop, "absolute", (32, 32)
    return cfg


@pytest.fixture
def semantic_sample(sample, tmp_path):
    sem = np.full((H, W), 2, dtype=np.uint8)
    sem[rect(H, W, A)] = 0
    sem[rect(H, W, B)] = 1
    sem[rect(H, W, CROWD)] = 255
    Image.fromarray(sem).save(tmp_path / "sem.png")
    return dict(sample, sem_seg_file_name=str(tmp_path / "sem.png"))


def test_maskformer_mappers_resize_and_pad(semantic_sample):
    # short side 128 → 64 (factor 1/2, source pixel 2j + 1): A → x 32..63, y 16..47; padded 64×128 → 96×144
    for name in ("mask_former_semantic", "mask_former_panoptic", "mask_former_instance"):
        out = build_mapper(name, maskformer_cfg())(semantic_sample)
        image, instances = out["image"], out["instances"]
        assert image.shape == (3, 96, 144) and instances.image_size == (96, 144)
        assert (image[:, 64:, :] == 128).all() and (image[:, :, 128:] == 128).all()
        assert instances.gt_classes.tolist()[:2] == [0, 1]
        assert instances.gt_boxes.tensor[:2].tolist() == [[32, 16, 64, 48], [0, 0, 16, 16]]
        np.testing.assert_array_equal(instances.gt_masks[0].numpy(), rect(96, 144, (32, 64, 16, 48)))
        assert not instances.gt_masks[:, 64:, :].any()  # nothing in the padding
    sem = build_mapper("mask_former_semantic", maskformer_cfg())(semantic_sample)["sem_seg"]
    assert sem.dtype == torch.int64 and (sem[64:] == 255).all() and (sem[16:48, 80:112] == 255).all()


def test_maskformer_crop_masks_agree_with_semantic_map(semantic_sample):
    cfg = maskformer_cfg(divisibility=-1, crop=True)
    np.random.seed(0)
    for _ in range(5):
        out = build_mapper("mask_former_semantic", cfg)(semantic_sample)
        sem, instances = out["sem_seg"].numpy(), out["instances"]
        assert out["image"].shape == (3, 32, 32) and sem.shape == (32, 32)
        assert instances.gt_classes.tolist() == sorted(set(np.unique(sem).tolist()) - {255})
        for cls, mask in zip(instances.gt_classes.tolist(), instances.gt_masks.numpy()):
            np.testing.assert_array_equal(mask, sem == cls)


def test_color_jitter_changes_colours_only():
    from openseed.data.mappers.maskformer import ColorJitterTransform

    image = np.full((4, 5, 3), 100, dtype=np.uint8)
    image[0, 0] = (250, 10, 100)
    jitter = ColorJitterTransform("RGB", brightness=10.0, contrast=2.0, contrast_first=True, saturation=None, hue=None)
    out = jitter.apply_image(image)
    assert out.shape == image.shape and out[1, 1].tolist() == [220, 220, 220] and out[0, 0].tolist() == [255, 40, 220]
    coords = np.array([[1.0, 2.0]])
    assert (jitter.apply_coords(coords.copy()) == coords).all()
