"""Inference post-processing of one image's query outputs (docs/official_behaviours.md §9), exact to the official numerics, lean in memory.

Entry point (used by the meta-architecture, once per image)::

    postprocess(
        class_logits,            # Q×K
        mask_logits,             # Q×h×w at stride 4 of the padded input (None allowed for tasks="detection")
        boxes,                   # Q×4 (cx, cy, w, h) normalised to the padded input
        *,
        tasks,                   # "panoptic" | "instance" | "semantic" | "detection", or an iterable of them
        input_size,              # (h, w) after the test resize, before padding: ImageList.image_sizes[i]
        padded_size,             # (h, w) of ImageList.tensor
        output_size,             # (height, width) of the dataset dict
        is_thing,                # K bools, Vocabulary.is_thing
        settings=None,           # PostprocessSettings.from_config(cfg); defaults = paper eval config
    ) -> {"sem_seg": K×H×W float32,
          "panoptic_seg": (int32 H×W, segments_info),
          "instances": Instances(pred_masks bool N×H×W (not for detection), pred_boxes Boxes, scores, pred_classes)}

Mask logits are upsampled bilinearly to the padded size, cropped to the input size and resized (bicubic,
antialias) to the output size; only the queries a task needs are resized (semantic: all; panoptic: the kept ones;
instance: the top-k ones), each pixel once, in tiles: bands of rows over all needed queries when the final resize
is the identity (`geometry.row_band_factor`; bounded by `PostprocessSettings.max_band_elements`), chunks of queries
over the whole image otherwise (bounded by `PostprocessSettings.max_chunk_elements`).
With `PostprocessSettings.resolution` "network" (the `Predictor` default) and an output larger than the input, all
of this happens at the input size and only the final outputs are brought to the output size (`resize_results`: nearest for ids and masks, bilinear for
semantic scores), so memory and time do not grow with the photo.
Panoptic uses all queries; instance/detection the first `num_foreground_queries` (thing classes only when panoptic
is requested too).
"""

from .geometry import ImageGeometry, boxes_to_output_pixels, resize_mask_logits
from .pipeline import postprocess
from .resize_results import resize_results
from .settings import RESOLUTIONS, TASKS, PostprocessSettings, normalize_tasks

__all__ = [
    "RESOLUTIONS",
    "TASKS",
    "ImageGeometry",
    "PostprocessSettings",
    "boxes_to_output_pixels",
    "normalize_tasks",
    "postprocess",
    "resize_mask_logits",
    "resize_results",
]
