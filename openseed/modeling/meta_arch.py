"""`OpenSeeD` meta-architecture: joint training over datasets, open-vocabulary inference, box-prompted masks.

See docs/architecture.md ("Model") for the contract of `forward`, `bind` and `segment_boxes`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import ImageList, Instances
from torch import Tensor, nn

from openseed.data.train_specs import TrainDatasetSpec, train_dataset_specs
from openseed.losses import SetCriterion
from openseed.modeling.decoder import BoxPrompts
from openseed.modeling.decoder.conditioned_queries import prompt_boxes_from_pixels
from openseed.modeling.head import OpenSeeDHead
from openseed.modeling.postprocessing import ImageGeometry, PostprocessSettings, normalize_tasks, postprocess
from openseed.modeling.postprocessing.box_prompts import box_prompt_instances, empty_box_prompt_instances
from openseed.modeling.targets import build_targets
from openseed.utils.random_draws import TrainingDraws
from openseed.vocabulary import Vocabulary

GENERIC_PROMPT_VOCABULARY = Vocabulary.from_names(["object"])


@META_ARCH_REGISTRY.register()
class OpenSeeD(nn.Module):
    """Backbone + `sem_seg_head` (pixel decoder, predictor with `lang_encoder`) + set criterion."""

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        sem_seg_head: OpenSeeDHead,
        criterion: SetCriterion,
        train_datasets: tuple[TrainDatasetSpec, ...] | Callable[[], tuple[TrainDatasetSpec, ...]],
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
        size_divisibility: int,
        input_format: str,
        default_tasks: tuple[str, ...],
        postprocess_settings: PostprocessSettings,
        target_boxes_by_image_size: bool = False,
    ):
        super().__init__()
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {input_format!r}")
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self._train_datasets = train_datasets
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.size_divisibility = size_divisibility
        self.input_format = input_format
        self.default_tasks = default_tasks
        self.postprocess_settings = postprocess_settings
        self.target_boxes_by_image_size = target_boxes_by_image_size

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        test = cfg.MODEL.DECODER.TEST
        switches = (("semantic", test.SEMANTIC_ON), ("instance", test.INSTANCE_ON), ("panoptic", test.PANOPTIC_ON))
        default_tasks = tuple(name for name, on in switches if on) or ("detection",)
        return {
            "backbone": backbone,
            "sem_seg_head": OpenSeeDHead(cfg, backbone.output_shape()),
            "criterion": SetCriterion(cfg),
            "train_datasets": partial(train_dataset_specs, cfg.clone()),
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "size_divisibility": cfg.MODEL.DECODER.SIZE_DIVISIBILITY,
            "input_format": cfg.INPUT.FORMAT,
            "default_tasks": default_tasks,
            "postprocess_settings": PostprocessSettings.from_config(cfg),
            "target_boxes_by_image_size": cfg.MODEL.DECODER.REFERENCE_TARGET_BOXES_BY_IMAGE_SIZE,
        }

    @property
    def train_datasets(self) -> dict[str, TrainDatasetSpec]:
        """Name -> record of each training dataset (`openseed.data.train_specs`). From a config, the records are made
        and validated when training first needs them, so a model built for inference does not depend on the
        training-data keys."""
        if callable(self._train_datasets):
            self._train_datasets = self._train_datasets()
        return {spec.name: spec for spec in self._train_datasets}

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def lang_encoder(self) -> nn.Module:
        return self.sem_seg_head.predictor.lang_encoder

    def forward(self, batched_inputs, vocabulary: Vocabulary | None = None, task=None,
                draws: TrainingDraws | None = None):
        """Training: {dataset_name: list[dict]} (or a list = the first training dataset) -> weighted losses; every
        random draw comes from `draws` under keys prefixed by the dataset's task (default: fresh draws).
        Inference: list[dict] with a `vocabulary` -> one result dict per image (see docs/architecture.md)."""
        if self.training:
            return self._training_losses(batched_inputs, vocabulary, draws or TrainingDraws())
        return self.inference(batched_inputs, vocabulary, task)

    def bind(self, vocabulary: Vocabulary, task=None) -> BoundOpenSeeD:
        """A module whose `forward(batched_inputs)` runs inference with this vocabulary and task."""
        return BoundOpenSeeD(self, vocabulary, task)

    def preprocess(self, batched_inputs: list[dict]) -> ImageList:
        """Normalise the uint8 3×H×W images (INPUT.FORMAT) and pad them to a multiple of the size divisibility."""
        if len(batched_inputs) == 0:
            raise ValueError("empty batch: expected at least one input dict")
        images = []
        for index, item in enumerate(batched_inputs):
            image = item.get("image") if isinstance(item, dict) else None
            if not torch.is_tensor(image) or image.dim() != 3 or image.shape[0] != 3:
                shape = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
                raise ValueError(f"input {index}: 'image' must be a 3×H×W tensor in {self.input_format} order, "
                                 f"got {shape}")
            image = image.to(self.device)
            if self.input_format == "BGR":
                image = image.flip(0)
            images.append((image - self.pixel_mean) / self.pixel_std)
        return ImageList.from_tensors(images, self.size_divisibility)

    def _training_losses(self, batched_inputs, vocabulary: Vocabulary | None,
                         draws: TrainingDraws) -> dict[str, Tensor]:
        if not isinstance(batched_inputs, dict):
            first = next(iter(self.train_datasets))
            batched_inputs = {first: batched_inputs}
        losses = {}
        for name, batch in batched_inputs.items():
            if name not in self.train_datasets:
                raise ValueError(f"training batch of dataset {name!r}, which is not in DATASETS.TRAIN "
                                 f"{sorted(self.train_datasets)}")
            if len(batch) == 0:
                continue
            dataset = self.train_datasets[name]
            vocab = vocabulary or dataset.vocabulary()
            for key, value in self._dataset_losses(batch, vocab, dataset.task, draws.scoped(dataset.task)).items():
                losses[f"{name}.{key}"] = value * dataset.loss_weight
        return losses

    def _dataset_losses(self, batch: list[dict], vocabulary: Vocabulary, task: str,
                        draws: TrainingDraws) -> dict[str, Tensor]:
        missing = [i for i, item in enumerate(batch) if "instances" not in item]
        if missing:
            raise ValueError(f"training inputs {missing} have no 'instances'")
        images = self.preprocess(batch)
        features = self.backbone(images.tensor)
        text = self.lang_encoder.embed_vocabulary(vocabulary, train=True, draws=draws, task=task)
        targets = build_targets([item["instances"] for item in batch], tuple(images.tensor.shape[-2:]), task,
                                vocabulary, self.device, self.target_boxes_by_image_size)
        outputs = self.sem_seg_head(features, text, targets=targets, task=task, draws=draws)
        return self.criterion(outputs, targets, task, outputs["num_foreground"], draws=draws)

    def _check_vocabulary(self, vocabulary) -> Vocabulary:
        if vocabulary is None or len(vocabulary) == 0:
            raise ValueError("inference needs a non-empty vocabulary (openseed.Vocabulary)")
        if not isinstance(vocabulary, Vocabulary):
            raise TypeError(f"vocabulary must be an openseed.Vocabulary, got {type(vocabulary).__name__}")
        return vocabulary

    def inference(self, batched_inputs: list[dict], vocabulary: Vocabulary | None, task=None) -> list[dict]:
        """Per image {"sem_seg", "panoptic_seg", "instances"} as requested by `task` (default: TEST.*_ON)."""
        vocabulary = self._check_vocabulary(vocabulary)
        tasks = normalize_tasks(task if task is not None else self.default_tasks)
        decoder_task = "seg" if tasks - {"detection"} else "det"
        images = self.preprocess(batched_inputs)
        image_sizes, padded_size = images.image_sizes, tuple(images.tensor.shape[-2:])
        text = self.lang_encoder.embed_vocabulary(vocabulary, train=False)
        outputs = self.sem_seg_head(self.backbone(images.tensor), text, task=decoder_task)
        del images  # neither the padded batch nor the backbone maps stay alive during post-processing (peak memory)
        results = []
        for index, item in enumerate(batched_inputs):
            input_size = image_sizes[index]
            results.append(postprocess(
                outputs["pred_logits"][index],
                outputs["pred_masks"][index] if "pred_masks" in outputs else None,
                outputs["pred_boxes"][index],
                tasks=tasks,
                input_size=input_size,
                padded_size=padded_size,
                output_size=(item.get("height", input_size[0]), item.get("width", input_size[1])),
                is_thing=vocabulary.is_thing,
                settings=self.postprocess_settings,
            ))
        return results

    def segment_boxes(self, batched_inputs: list[dict], boxes, concepts=None,
                      vocabulary: Vocabulary | None = None) -> list[Instances]:
        """Box-prompted segmentation (docs/official_behaviours.md §6.3): one mask per given box.

        Args:
            batched_inputs: list of {"image": uint8 3×H×W, optional "height", "width" (output size)}.
            boxes: per image an N_i×4 xyxy array/tensor in output-image pixels; boxes reaching outside the image are
                clipped (with a warning).
            concepts: optional, per image N_i concept names; each prompt's content is its concept's text embedding
                (mapped by `lang_mapper`); without concepts the content is zero (box only).
            vocabulary: optional classes to label the masks with. Without it the masks are labelled with their
                concept (index into the sorted unique concepts), or class 0 of the generic vocabulary ("object",).

        Returns:
            per image `Instances` of the output size with, per box in the given order, `pred_masks` (bool H×W),
            `pred_boxes` (the box head's refined box, xyxy pixels), `scores` (class score × mean mask probability
            inside the mask) and `pred_classes`. With post-processing resolution "network" and an output larger than the
            network input, the masks are decided at the input size and resized by nearest neighbour.
        """
        if self.training:
            raise RuntimeError("segment_boxes is an inference API; call model.eval() first")
        if len(boxes) != len(batched_inputs):
            raise ValueError(f"{len(boxes)} box sets for {len(batched_inputs)} images")
        if concepts is not None and len(concepts) != len(batched_inputs):
            raise ValueError(f"{len(concepts)} concept lists for {len(batched_inputs)} images")
        _check_finite_boxes(boxes)
        images = self.preprocess(batched_inputs)
        padded_size = tuple(images.tensor.shape[-2:])
        output_sizes = [(item.get("height", size[0]), item.get("width", size[1]))
                        for item, size in zip(batched_inputs, images.image_sizes)]
        prompt_boxes, valid = prompt_boxes_from_pixels(boxes, output_sizes, images.image_sizes, padded_size,
                                                       self.device)
        if valid.shape[1] == 0:
            return [empty_box_prompt_instances(size, self.device) for size in output_sizes]

        concept_ids, prompt_text = None, None
        if concepts is not None:
            concept_vocab, concept_ids = _concept_vocabulary(concepts, [len(b) for b in boxes])
            concept_text = self.lang_encoder.embed_vocabulary(concept_vocab, train=False)
            prompt_text = concept_text.new_zeros(*valid.shape, concept_text.shape[-1])
            for index, ids in enumerate(concept_ids):
                prompt_text[index, : len(ids)] = concept_text[ids.to(self.device)]
        if vocabulary is not None:
            class_vocab = self._check_vocabulary(vocabulary)
        else:
            class_vocab = concept_vocab if concepts is not None else GENERIC_PROMPT_VOCABULARY
        text = self.lang_encoder.embed_vocabulary(class_vocab, train=False)
        features = self.backbone(images.tensor)
        outputs = self.sem_seg_head(features, text, task="det",
                                    box_prompts=BoxPrompts(prompt_boxes, valid, prompt_text))
        prompts = outputs["prompt_outputs"]
        results = []
        for index, output_size in enumerate(output_sizes):
            count = int(valid[index].sum())
            geometry = ImageGeometry(images.image_sizes[index], padded_size, output_size)
            classes = concept_ids[index] if vocabulary is None and concepts is not None else None
            results.append(box_prompt_instances(prompts["pred_logits"][index, :count],
                                                prompts["pred_masks"][index, :count],
                                                prompts["pred_boxes"][index, :count], geometry,
                                                self.postprocess_settings, classes))
        return results


def _concept_vocabulary(concepts, counts: list[int]) -> tuple[Vocabulary, list[Tensor]]:
    """Sorted unique concept names as a vocabulary, and per image the index of each box's concept."""
    for index, (names, count) in enumerate(zip(concepts, counts)):
        if len(names) != count:
            raise ValueError(f"image {index}: {len(names)} concepts for {count} boxes")
    unique = sorted({str(name) for names in concepts for name in names})
    if not unique:
        return GENERIC_PROMPT_VOCABULARY, [torch.zeros(0, dtype=torch.long) for _ in concepts]
    position = {name: i for i, name in enumerate(unique)}
    ids = [torch.tensor([position[str(n)] for n in names], dtype=torch.long) for names in concepts]
    return Vocabulary.from_names(unique), ids


class BoundOpenSeeD(nn.Module):
    """`OpenSeeD` with a fixed vocabulary and task: what Detectron2's `inference_on_dataset` calls."""

    def __init__(self, model: OpenSeeD, vocabulary: Vocabulary, task=None):
        super().__init__()
        self.model = model
        self.vocabulary = model._check_vocabulary(vocabulary)
        self.task = task

    def forward(self, batched_inputs: list[dict]) -> list[dict]:
        return self.model(batched_inputs, vocabulary=self.vocabulary, task=self.task)


def _check_finite_boxes(boxes_per_image) -> None:
    """Refuse NaN or infinite prompt boxes (they would silently become garbage prompts)."""
    for index, raw in enumerate(boxes_per_image):
        values = torch.as_tensor(raw, dtype=torch.float32).reshape(-1, 4)
        bad = (~torch.isfinite(values)).any(-1).nonzero()[:, 0].tolist()
        if bad:
            raise ValueError(f"image {index}: boxes {bad} have NaN or infinite coordinates "
                             f"({values[bad[0]].tolist()}); expected finite x0, y0, x1, y1 pixels")
