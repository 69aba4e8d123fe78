"""Box-only LSJ training mapper (`objects365_lsj`, official name `object365`; docs/official_behaviours.md §10.2).

The same flip / ResizeScale / FixedSizeCrop pipeline as the COCO LSJ mapper. Crowd boxes are dropped. A box that is
not finite, of zero or negative width or height, or entirely outside the image is dropped before the transform,
counted and logged per reason (`robust.box_problem`, `self.dropped`); the image is kept, as the official
`O365InstanceNewBaselineDatasetMapper` keeps it (docs/fidelity_mappers.md, difference 5). An unknown category id
still makes the whole sample bad (`BadSampleError`). The other boxes are transformed, clipped to the canvas and
dropped when (almost) empty after the crop.

Output: {"image": uint8 3×S×S, "instances": Instances((S, S), gt_classes int64[N], gt_boxes Boxes N×4 xyxy canvas
pixels), "height", "width", "file_name", "image_id"} — no masks.
"""

from __future__ import annotations

import numpy as np
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from .lsj import LSJMapperBase, load_image_for_training, make_instances, training_output
from .robust import box_problem, check_category


class Objects365LSJMapper(LSJMapperBase):
    """Detection json (boxes) → LSJ training sample without masks; empty boxes are always removed."""

    def __call__(self, dataset_dict: dict) -> dict:
        image = load_image_for_training(dataset_dict, self.image_format)
        file_name, image_hw = dataset_dict["file_name"], image.shape[:2]
        annotations = [a for a in dataset_dict.get("annotations", []) if not a.get("iscrowd", 0)]
        classes, boxes = [], []
        for ann in annotations:
            category = check_category(file_name, ann["category_id"], self.num_classes)
            box = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYXY_ABS)
            problem = box_problem(box, image_hw)
            if problem is not None:
                self.dropped.count(problem, "dropping an annotation, keeping the image",
                                   f"{file_name}: box {list(ann['bbox'])} ({BoxMode(ann['bbox_mode']).name}) on the "
                                   f"{image_hw[1]}×{image_hw[0]} (W×H) image")
                continue
            classes.append(category)
            boxes.append(box)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        canvas_h, canvas_w = aug_input.image.shape[:2]
        boxes_array = transforms.apply_box(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
        boxes_array = np.clip(boxes_array, 0, [canvas_w, canvas_h, canvas_w, canvas_h])
        instances = make_instances((canvas_h, canvas_w), classes, None, boxes_array, filter_empty=True)
        return training_output(dataset_dict, aug_input.image, instances)
