"""Large-scale-jitter (LSJ) training mappers for segmentation data (docs/official_behaviours.md §10.1): COCO panoptic and COCO instances.

Augmentation, in order: random horizontal flip (p = 0.5), `ResizeScale` (s ~ U(MIN_SCALE, MAX_SCALE); the image is
resized bilinearly, aspect kept, to fit inside s·IMAGE_SIZE square), `FixedSizeCrop(IMAGE_SIZE²)` (random crop when
larger, then pad right/bottom with image value PAD_VALUE = 128 and segmentation value 255). The three random draws
come from a draw source passed as `draws=` (`draws.py`: NumPy's global stream by default, recorded draws to replay).

Output of every training mapper (docs/architecture.md):
    {"image": uint8 3×S×S (S = IMAGE_SIZE), "instances": Instances((S, S), gt_classes int64[N],
     gt_boxes Boxes N×4 xyxy canvas pixels, gt_masks bool N×S×S), "height", "width", "file_name", "image_id"}
"""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes, Instances
from panopticapi.utils import rgb2id

from openseed.vocabulary import dataset_vocabulary

from .draws import NUMPY_GLOBAL_DRAWS, DrawSource, LSJFixedSizeCrop, LSJRandomFlip, LSJResizeScale
from .robust import BadInputCounter, BadSampleError, check_category, check_image_size, read_image_checked

SEG_PAD_VALUE = 255


def build_lsj_augmentation(
    *, image_size: int, min_scale: float, max_scale: float, random_flip: str, pad_value: float = 128.0,
    draws: DrawSource = NUMPY_GLOBAL_DRAWS,
) -> list[T.Augmentation]:
    """Flip → ResizeScale(min_scale..max_scale of image_size) → FixedSizeCrop(image_size², pad 128 / seg 255), each
    drawing its random number from `draws` (default: NumPy's global stream, as Detectron2; see `draws.py`)."""
    augmentations: list[T.Augmentation] = []
    if random_flip != "none":
        augmentations.append(
            LSJRandomFlip(horizontal=random_flip == "horizontal", vertical=random_flip == "vertical", draws=draws))
    augmentations += [
        LSJResizeScale(min_scale, max_scale, image_size, image_size, draws=draws),
        LSJFixedSizeCrop((image_size, image_size), pad_value=pad_value, seg_pad_value=SEG_PAD_VALUE, draws=draws),
    ]
    return augmentations


def lsj_config(cfg) -> dict:
    return {
        "image_size": cfg.INPUT.IMAGE_SIZE,
        "min_scale": cfg.INPUT.MIN_SCALE,
        "max_scale": cfg.INPUT.MAX_SCALE,
        "random_flip": cfg.INPUT.RANDOM_FLIP,
        "pad_value": float(cfg.INPUT.PAD_VALUE),
    }


def dataset_num_classes(dataset_name: str | None) -> int | None:
    """Size of a registered dataset's vocabulary (None without a dataset name)."""
    if not dataset_name:
        return None
    return len(dataset_vocabulary(dataset_name))


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight xyxy boxes (N×4 float32; x1/y1 exclusive = max index + 1, as Detectron2's `BitMasks`) of bool masks
    N×H×W; an empty mask gets (0, 0, 0, 0)."""
    n, h, w = masks.shape
    boxes = np.zeros((n, 4), dtype=np.float32)
    if n == 0:
        return boxes
    x_any, y_any = masks.any(axis=1), masks.any(axis=2)
    boxes[:, 0] = x_any.argmax(axis=1)
    boxes[:, 1] = y_any.argmax(axis=1)
    boxes[:, 2] = w - x_any[:, ::-1].argmax(axis=1)
    boxes[:, 3] = h - y_any[:, ::-1].argmax(axis=1)
    boxes[~x_any.any(axis=1)] = 0
    return boxes


def make_instances(image_hw: tuple[int, int], classes: list[int], masks: np.ndarray | None,
                   boxes: np.ndarray | None = None, *, filter_empty: bool) -> Instances:
    """Instances with gt_classes, gt_boxes (the masks' boxes when `masks` (bool N×H×W) is given, else `boxes` N×4
    xyxy) and gt_masks; empty instances are dropped when `filter_empty`."""
    classes_array = np.asarray(classes, dtype=np.int64).reshape(-1)
    if masks is not None:
        boxes = masks_to_boxes(masks)
        keep = masks.any(axis=(1, 2))
    else:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        keep = ((boxes[:, 2] - boxes[:, 0]) > 1e-5) & ((boxes[:, 3] - boxes[:, 1]) > 1e-5)
    if not filter_empty:
        keep = np.ones_like(keep)
    instances = Instances(tuple(image_hw))
    instances.gt_classes = torch.from_numpy(classes_array[keep])
    instances.gt_boxes = Boxes(torch.from_numpy(np.ascontiguousarray(boxes[keep])))
    if masks is not None:
        instances.gt_masks = torch.from_numpy(np.ascontiguousarray(masks[keep]))
    return instances


def training_output(dataset_dict: dict, image: np.ndarray, instances: Instances) -> dict:
    h, w = image.shape[:2]
    return {
        "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
        "instances": instances,
        "height": dataset_dict.get("height", h),
        "width": dataset_dict.get("width", w),
        "file_name": dataset_dict["file_name"],
        "image_id": dataset_dict.get("image_id"),
    }


def load_image_for_training(dataset_dict: dict, image_format: str) -> np.ndarray:
    image = read_image_checked(dataset_dict["file_name"], image_format)
    check_image_size(dataset_dict, image)
    return image


def read_panoptic_png(dataset_dict: dict, image_hw: tuple[int, int]) -> np.ndarray:
    """The panoptic PNG (H×W×3 uint8, RGB-encoded ids); must have the image's size."""
    png = dataset_dict["pan_seg_file_name"]
    pan_rgb = read_image_checked(png, "RGB")
    if pan_rgb.shape[:2] != tuple(image_hw):
        raise BadSampleError(
            f"{png}: panoptic PNG is {pan_rgb.shape[1]}×{pan_rgb.shape[0]} (W×H) but image "
            f"{dataset_dict['file_name']} is {image_hw[1]}×{image_hw[0]}"
        )
    return pan_rgb


def valid_segments(dataset_dict: dict, pan_ids: np.ndarray, num_classes: int | None) -> list[tuple[int, int]]:
    """(segment id, contiguous class) of the non-crowd segments; each must occur in the (untransformed) PNG."""
    png = dataset_dict["pan_seg_file_name"]
    segments = []
    for segment in dataset_dict.get("segments_info", []):
        if segment.get("iscrowd", 0):
            continue
        category = check_category(png, segment["category_id"], num_classes)
        if not (pan_ids == segment["id"]).any():
            raise BadSampleError(f"{png}: segment id {segment['id']} of segments_info does not occur in the PNG")
        segments.append((int(segment["id"]), category))
    return segments


class LSJMapperBase:
    """Shared constructor of the LSJ training mappers; `dropped` counts and logs the annotations a mapper drops
    while keeping the image (`robust.py`)."""

    @configurable
    def __init__(self, *, augmentations: list, image_format: str, filter_empty_after_crop: bool,
                 num_classes: int | None = None, dataset_name: str = ""):
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.filter_empty_after_crop = filter_empty_after_crop
        self.num_classes = num_classes
        self.dropped = BadInputCounter(dataset_name)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True, dataset_name: str | None = None,
                    draws: DrawSource = NUMPY_GLOBAL_DRAWS) -> dict:
        """`draws`: the source of the flip / scale / crop draws (`draws.py`; e.g. `ReplayDraws` to replay)."""
        if not is_train:
            raise ValueError(f"{cls.__name__} is a training mapper; evaluation uses TestMapper")
        return {
            "augmentations": build_lsj_augmentation(**lsj_config(cfg), draws=draws),
            "image_format": cfg.INPUT.FORMAT,
            "filter_empty_after_crop": cfg.INPUT.FILTER_EMPTY_AFTER_CROP,
            "num_classes": dataset_num_classes(dataset_name),
            "dataset_name": dataset_name or "",
        }


class COCOPanopticLSJMapper(LSJMapperBase):
    """COCO panoptic → LSJ training sample (`coco_panoptic_lsj`); crowd segments are dropped (their pixels become
    unlabelled), boxes are the tight boxes of the transformed masks, and segments cropped away entirely are dropped
    when `filter_empty_after_crop` (else kept with an all-false mask and a (0, 0, 0, 0) box, as the reference)."""

    def __call__(self, dataset_dict: dict) -> dict:
        image = load_image_for_training(dataset_dict, self.image_format)
        pan_rgb = read_panoptic_png(dataset_dict, image.shape[:2])
        segments = valid_segments(dataset_dict, rgb2id(pan_rgb), self.num_classes)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        pan_ids = rgb2id(transforms.apply_segmentation(pan_rgb))
        segment_ids = np.asarray([segment_id for segment_id, _ in segments], dtype=pan_ids.dtype)
        masks = pan_ids[None] == segment_ids[:, None, None]
        classes = [c for _, c in segments]
        instances = make_instances(pan_ids.shape, classes, masks, filter_empty=self.filter_empty_after_crop)
        return training_output(dataset_dict, aug_input.image, instances)


def annotation_mask(ann: dict, transforms: T.TransformList, image_hw: tuple, file_name: str) -> np.ndarray:
    """The transformed mask (bool, canvas H×W) of a COCO annotation with polygons or (compressed or not) RLE.

    The mask is rasterised at the image size, then transformed like a segmentation map (nearest neighbour)."""
    segmentation = ann["segmentation"]
    if isinstance(segmentation, list):
        mask = utils.polygons_to_bitmask([np.asarray(p, dtype=np.float64) for p in segmentation], *image_hw)
    else:
        if isinstance(segmentation.get("counts"), list):
            segmentation = mask_util.frPyObjects(segmentation, *segmentation["size"])
        mask = mask_util.decode(segmentation).astype(bool)
    if mask.shape != tuple(image_hw):
        raise BadSampleError(f"{file_name}: mask of size {mask.shape} differs from the image size {tuple(image_hw)}")
    return transforms.apply_segmentation(mask.astype(np.uint8)) == 1


class COCOInstanceLSJMapper(LSJMapperBase):
    """COCO instances (polygons or RLE) → LSJ training sample (`coco_instance_lsj`); masks rasterised after the
    transform, boxes = tight boxes of the masks, crowd dropped, empty-after-crop handled as the panoptic mapper.

    The annotations' own `bbox` is not read (the official `COCOInstanceNewBaselineDatasetMapper` also replaces it by
    the mask's box), so a degenerate `bbox` neither drops the annotation nor the image."""

    def __call__(self, dataset_dict: dict) -> dict:
        image = load_image_for_training(dataset_dict, self.image_format)
        file_name, image_hw = dataset_dict["file_name"], image.shape[:2]
        annotations = [a for a in dataset_dict.get("annotations", []) if not a.get("iscrowd", 0)]
        for ann in annotations:
            check_category(file_name, ann["category_id"], self.num_classes)
            if not ann.get("segmentation"):
                raise BadSampleError(f"{file_name}: annotation without a segmentation in a mask dataset")
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        canvas_hw = aug_input.image.shape[:2]
        masks = np.zeros((len(annotations), *canvas_hw), dtype=bool)
        for k, ann in enumerate(annotations):
            masks[k] = annotation_mask(ann, transforms, image_hw, file_name)
        classes = [int(a["category_id"]) for a in annotations]
        instances = make_instances(canvas_hw, classes, masks, filter_empty=self.filter_empty_after_crop)
        return training_output(dataset_dict, aug_input.image, instances)
