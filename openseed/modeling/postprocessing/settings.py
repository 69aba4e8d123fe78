"""Test-time settings of the post-processing (`MODEL.DECODER.TEST.*`, docs/official_behaviours.md §9 and §16) and the task names."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from openseed.structures import OUTPUT_TASKS as TASKS

RESOLUTIONS = ("output", "network")


@dataclass(frozen=True)
class PostprocessSettings:
    """Thresholds and switches of docs/official_behaviours.md §9 (defaults = the paper model's eval config).

    Attributes:
        object_mask_threshold: panoptic keeps queries whose max sigmoid class score is above this.
        overlap_threshold: panoptic drops a query whose argmax-won area / own area (sigmoid ≥ 0.5) is below this.
        transform_eval: sharpen class scores with softmax(sigmoid(logits) / temperature) (panoptic and semantic).
        temperature: the sharpening temperature.
        focus_on_box: instance score = class score only (mask score replaced by 1).
        detections_per_image: top-k over (foreground queries × classes) for instance and detection output.
        num_foreground_queries: instance/detection use only the first this-many queries.
        max_chunk_elements: memory bound when the results are resized to another output size: mask logits are
            resized in chunks of queries of at most about this many padded-size pixels (queries × padded height ×
            padded width); larger chunks make fewer, faster resize calls.
        max_band_elements: memory bound when the output size is the input size: tiles of bands of rows over all
            needed queries of at most about this many pixels (queries × rows × padded width). Each band also
            upsamples f neighbour rows it does not keep (f = 4 for the model's stride-4 masks), so taller bands waste
            less: at 800×1216 with 400 queries, 20-row bands (48 MB) instead of 12-row ones (32 MB) took the float32
            post-processing 1.65 → 1.55 s for about 0.1 GB more peak memory (2-core AMD EPYC).
        Results do not depend on either beyond float summation order.
        resolution: "output" resizes every needed query's mask to the output size before the merge (the official
            order, exact); "network" does the same for outputs no larger than the network input, and for larger ones
            merges at the input size and resizes only the final outputs (`resize_results`), so memory and time do
            not grow with the output size.
    """

    object_mask_threshold: float = 0.25
    overlap_threshold: float = 0.8
    transform_eval: bool = True
    temperature: float = 0.06
    focus_on_box: bool = False
    detections_per_image: int = 300
    num_foreground_queries: int = 300
    max_chunk_elements: int = 1 << 25  # 128 MB float32 chunks (README "Performance": eval with --output-size)
    max_band_elements: int = 3 << 22  # 48 MB float32 tiles: 400 queries × 20 rows × 1216 (see the docstring)
    resolution: str = "output"

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        counts = {name: getattr(self, name) for name in ("detections_per_image", "num_foreground_queries",
                                                            "max_chunk_elements", "max_band_elements")}
        if min(counts.values()) <= 0:
            raise ValueError(f"{', '.join(counts)} must be positive, got {list(counts.values())}")
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"post-processing resolution must be one of {RESOLUTIONS}, got {self.resolution!r}")

    @classmethod
    def from_config(cls, cfg) -> PostprocessSettings:
        """Settings from a config with the openseed keys (`openseed.config`)."""
        test = cfg.MODEL.DECODER.TEST
        return cls(
            object_mask_threshold=test.OBJECT_MASK_THRESHOLD,
            overlap_threshold=test.OVERLAP_THRESHOLD,
            transform_eval=test.PANO_TRANSFORM_EVAL,
            temperature=test.PANO_TEMPERATURE,
            focus_on_box=test.FOCUS_ON_BOX,
            detections_per_image=test.DETECTIONS_PER_IMAGE,
            num_foreground_queries=cfg.MODEL.DECODER.NUM_OBJECT_QUERIES_TEST,
            resolution=test.POSTPROCESS_RESOLUTION,
        )


def normalize_tasks(tasks: str | Iterable[str]) -> frozenset[str]:
    """`"panoptic"` or an iterable of task names -> a validated set.

    "instance" and "detection" both produce `instances` (with and without masks) and exclude each other.
    """
    names = frozenset([tasks] if isinstance(tasks, str) else tasks)
    unknown = sorted(names - set(TASKS))
    if unknown or not names:
        raise ValueError(f"unknown or empty post-processing tasks {sorted(names)}; expected a subset of {TASKS}")
    if {"instance", "detection"} <= names:
        raise ValueError("'instance' and 'detection' both produce `instances`; request only one of them")
    return names
