"""MaskFormer-style fine-tuning mappers (docs/official_behaviours.md §10.3): `mask_former_semantic`, `mask_former_panoptic`,
`mask_former_instance`.

Augmentation, in order: ResizeShortestEdge(MIN_SIZE_TRAIN, MAX_SIZE_TRAIN, MIN_SIZE_TRAIN_SAMPLING); when
`INPUT.CROP.ENABLED` a crop of `CROP.TYPE`/`CROP.SIZE` (semantic/panoptic: no class may cover more than
`CROP.SINGLE_CATEGORY_MAX_AREA` of it, ignore label excluded); SSD colour jitter when `INPUT.COLOR_AUG_SSD`; random
flip. The result is padded right/bottom to a multiple of `INPUT.SIZE_DIVISIBILITY` (when > 0) with image value
PAD_VALUE, semantic value = ignore label, panoptic value = void.

Output: as the LSJ mappers (`lsj.py`) with a variable canvas H×W (the padded size): "image" uint8 3×H×W,
"instances" (gt_classes, gt_boxes from the masks, gt_masks bool N×H×W), plus "sem_seg" (int64 H×W, semantic mapper).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from panopticapi.utils import rgb2id

from .lsj import (
    annotation_mask,
    dataset_num_classes,
    load_image_for_training,
    make_instances,
    read_panoptic_png,
    training_output,
    valid_segments,
)
from .robust import BadSampleError, check_category, read_image_checked


class ColorJitterTransform(T.Transform):
    """SSD photometric distortion with fixed parameters (image only; geometry unchanged)."""

    def __init__(self, image_format: str, brightness: float | None, contrast: float | None, contrast_first: bool,
                 saturation: float | None, hue: int | None):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        image = img[:, :, ::-1] if self.image_format == "RGB" else img  # OpenCV's HSV works on BGR
        image = np.ascontiguousarray(image).astype(np.float32)
        if self.brightness is not None:
            image = np.clip(image + self.brightness, 0, 255)
        if self.contrast is not None and self.contrast_first:
            image = np.clip(image * self.contrast, 0, 255)
        if self.saturation is not None or self.hue is not None:
            hsv = cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.int32)
            if self.saturation is not None:
                hsv[:, :, 1] = np.clip(hsv[:, :, 1] * self.saturation, 0, 255)
            if self.hue is not None:
                hsv[:, :, 0] = (hsv[:, :, 0] + self.hue) % 180
            image = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
        if self.contrast is not None and not self.contrast_first:
            image = np.clip(image * self.contrast, 0, 255)
        image = image.astype(np.uint8)
        return np.ascontiguousarray(image[:, :, ::-1]) if self.image_format == "RGB" else image

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation


class ColorAugSSD(T.Augmentation):
    """Each of brightness (±32), contrast and saturation (×0.5-1.5), hue (±18 of 180) applied with p = 0.5."""

    def __init__(self, image_format: str, brightness_delta: float = 32, contrast_range=(0.5, 1.5),
                 saturation_range=(0.5, 1.5), hue_delta: int = 18):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        def maybe(draw):
            return draw() if np.random.randint(2) else None

        return ColorJitterTransform(
            self.image_format,
            brightness=maybe(lambda: np.random.uniform(-self.brightness_delta, self.brightness_delta)),
            contrast=maybe(lambda: np.random.uniform(*self.contrast_range)),
            contrast_first=bool(np.random.randint(2)),
            saturation=maybe(lambda: np.random.uniform(*self.saturation_range)),
            hue=maybe(lambda: int(np.random.randint(-self.hue_delta, self.hue_delta))),
        )


def build_maskformer_augmentation(cfg, *, category_area_constraint: bool, ignore_label: int) -> list[T.Augmentation]:
    augmentations: list[T.Augmentation] = [T.ResizeShortestEdge(
        cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)]
    if cfg.INPUT.CROP.ENABLED:
        if category_area_constraint:
            augmentations.append(T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE, cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA, ignore_label))
        else:
            augmentations.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
    if cfg.INPUT.COLOR_AUG_SSD:
        augmentations.append(ColorAugSSD(cfg.INPUT.FORMAT))
    if cfg.INPUT.RANDOM_FLIP != "none":
        augmentations.append(T.RandomFlip(horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                                          vertical=cfg.INPUT.RANDOM_FLIP == "vertical"))
    return augmentations


def pad_to_divisibility(array: np.ndarray, divisibility: int, value) -> np.ndarray:
    """Pad H×W(×C) right/bottom to multiples of `divisibility` (no padding when ≤ 0)."""
    if divisibility <= 0:
        return array
    h, w = array.shape[:2]
    pad = [(0, -h % divisibility), (0, -w % divisibility)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, mode="constant", constant_values=value)


class MaskFormerMapperBase:
    """Shared constructor of the fine-tuning mappers."""

    category_area_constraint = True

    @configurable
    def __init__(self, *, augmentations: list, image_format: str, size_divisibility: int, pad_value: float,
                 ignore_label: int = 255, num_classes: int | None = None):
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.size_divisibility, self.pad_value = size_divisibility, pad_value
        self.ignore_label, self.num_classes = ignore_label, num_classes

    @classmethod
    def from_config(cls, cfg, is_train: bool = True, dataset_name: str | None = None) -> dict:
        if not is_train:
            raise ValueError(f"{cls.__name__} is a training mapper; evaluation uses TestMapper")
        ignore_label = getattr(MetadataCatalog.get(dataset_name), "ignore_label", 255) if dataset_name else 255
        return {
            "augmentations": build_maskformer_augmentation(
                cfg, category_area_constraint=cls.category_area_constraint, ignore_label=ignore_label),
            "image_format": cfg.INPUT.FORMAT,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
            "pad_value": float(cfg.INPUT.PAD_VALUE),
            "ignore_label": ignore_label,
            "num_classes": dataset_num_classes(dataset_name),
        }

    def _pad_image(self, image: np.ndarray) -> np.ndarray:
        return pad_to_divisibility(image, self.size_divisibility, self.pad_value).astype(np.uint8)


class MaskFormerSemanticMapper(MaskFormerMapperBase):
    """Semantic maps (`sem_seg_file_name`, class index per pixel) → one instance per class present."""

    def __call__(self, dataset_dict: dict) -> dict:
        image = load_image_for_training(dataset_dict, self.image_format)
        sem_file = dataset_dict["sem_seg_file_name"]
        sem = read_image_checked(sem_file, None)
        if sem.ndim != 2 or sem.shape != image.shape[:2]:
            raise BadSampleError(f"{sem_file}: semantic map of shape {sem.shape} does not match the image "
                                 f"{dataset_dict['file_name']} of size {image.shape[:2]}")
        aug_input = T.AugInput(image, sem_seg=sem if sem.dtype == np.uint8 else sem.astype(np.float64))
        self.augmentations(aug_input)
        image = self._pad_image(aug_input.image)
        sem = pad_to_divisibility(aug_input.sem_seg.astype(np.int64), self.size_divisibility, self.ignore_label)
        classes = [int(c) for c in np.unique(sem) if c != self.ignore_label]
        for c in classes:
            check_category(sem_file, c, self.num_classes)
        masks = sem[None] == np.asarray(classes, dtype=np.int64)[:, None, None]
        output = training_output(dataset_dict, image, make_instances(sem.shape, classes, masks, filter_empty=True))
        output["sem_seg"] = torch.from_numpy(np.ascontiguousarray(sem))
        return output


class MaskFormerPanopticMapper(MaskFormerMapperBase):
    """COCO-panoptic PNG + segments_info → one instance per non-crowd segment (crowd and void become unlabelled)."""

    def __call__(self, dataset_dict: dict) -> dict:
        image = load_image_for_training(dataset_dict, self.image_format)
        pan_rgb = read_panoptic_png(dataset_dict, image.shape[:2])
        pan_ids = rgb2id(pan_rgb)
        segments = valid_segments(dataset_dict, pan_ids, self.num_classes)
        sem = np.full(pan_ids.shape, self.ignore_label, dtype=np.float64)  # for the category-area crop constraint
        for segment_id, category in segments:
            sem[pan_ids == segment_id] = category
        aug_input = T.AugInput(image, sem_seg=sem)
        transforms = self.augmentations(aug_input)
        pan_ids = pad_to_divisibility(rgb2id(transforms.apply_segmentation(pan_rgb)), self.size_divisibility, 0)
        segment_ids = np.asarray([s for s, _ in segments], dtype=pan_ids.dtype)
        masks = pan_ids[None] == segment_ids[:, None, None]
        instances = make_instances(pan_ids.shape, [c for _, c in segments], masks, filter_empty=True)
        return training_output(dataset_dict, self._pad_image(aug_input.image), instances)


class MaskFormerInstanceMapper(MaskFormerMapperBase):
    """COCO instances (polygons / RLE) → instances; crowd dropped; crops are plain random crops."""

    category_area_constraint = False

    def __call__(self, dataset_dict: dict) -> dict:
        image = load_image_for_training(dataset_dict, self.image_format)
        file_name, image_hw = dataset_dict["file_name"], image.shape[:2]
        annotations = [a for a in dataset_dict.get("annotations", []) if not a.get("iscrowd", 0)]
        classes = [check_category(file_name, a["category_id"], self.num_classes) for a in annotations]
        if any(not a.get("segmentation") for a in annotations):
            raise BadSampleError(f"{file_name}: annotation without a segmentation in a mask dataset")
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        canvas = self._pad_image(aug_input.image)
        masks = np.zeros((len(annotations), *canvas.shape[:2]), dtype=bool)
        for k, ann in enumerate(annotations):
            masks[k] = pad_to_divisibility(annotation_mask(ann, transforms, image_hw, file_name),
                                           self.size_divisibility, False)
        instances = make_instances(canvas.shape[:2], classes, masks, filter_empty=True)
        return training_output(dataset_dict, canvas, instances)
