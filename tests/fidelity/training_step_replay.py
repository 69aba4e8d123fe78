"""Replay one recorded official training step (a fixture of `scripts/reference/training_step.py`) through our model.

The fixture holds the batch, the official targets, every official random draw by key, the matching, the weighted
loss terms, gradient statistics and the result of one AdamW step (see the harness docstring). `replay_step` builds
our decoupled Swin-T model with the same regenerated official weights, feeds the same batch with the recorded draws
(`RecordedDraws`) and takes one optimizer step as `JointStepTrainer` does (backward, full-model clipping, AdamW with
our parameter groups); it returns what the tests compare.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from openseed.checkpoint import load_official_weights
from openseed.config import setup_cfg
from openseed.engine.optimizer import build_optimizer, clip_full_model_gradients
from openseed.utils.random_draws import RecordedDraws
from openseed.vocabulary import Vocabulary
from tests.refdata_utils import official_state_dict

FIXTURES = Path(__file__).parent / "fixtures"
CONFIG = "configs/openseed/swint_decoupled_coco_o365.yaml"
OFFICIAL_DATASETS = {"coco": "seg", "o365": "det"}  # official loss prefix -> task
# Settings under which the fixtures were recorded (see the harness): CPU, no stochastic depth.
FIXTURE_OPTS = ["MODEL.DEVICE", "cpu", "MODEL.SWIN.DROP_PATH_RATE", "0.0"]
# Every reference-behaviour flag (clean defaults off): what the official step computes.
REFERENCE_FLAGS = ["DATASETS.CLASS_NAME_NORMALISATION", "reference", "SOLVER.REFERENCE_WEIGHT_DECAY_QUIRKS", "True",
                   "MODEL.DECODER.REFERENCE_THING_ID_BOUND", "80", "MODEL.DECODER.DET_INTERM_KEEP_BACKGROUND", "True",
                   "MODEL.DECODER.REFERENCE_TARGET_BOXES_BY_IMAGE_SIZE", "True"]


@functools.lru_cache(maxsize=4)
def load_fixture(name: str) -> dict:
    return torch.load(FIXTURES / name, weights_only=True)


def projection(key: str, numel: int) -> torch.Tensor:
    """The ±1 vector seeded by crc32(key) that the harness projects each parameter's update on."""
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    return torch.randint(0, 2, (numel,), generator=gen).float() * 2 - 1


def named_value(tensors: dict, name: str) -> torch.Tensor:
    """`name` or `name[:rows]` of a {name: tensor} dict."""
    base, _, rows = name.partition("[:")
    value = tensors[base]
    return value[: int(rows.rstrip("]"))] if rows else value


def unpacked_masks(item: dict) -> torch.Tensor:
    """The bool N×H×W masks of a fixture item (stored bit-packed along W)."""
    bits = np.unpackbits(item["masks_packed"].numpy(), axis=-1, count=item["mask_width"])
    return torch.from_numpy(bits.astype(bool))


def _register_vocabularies(vocab: dict) -> dict[str, str]:
    """Metadata of the fixture's two vocabularies; returns {official prefix: our dataset name}."""
    seg, det = vocab["seg"], vocab["det"]
    tag = f"{zlib.crc32(repr(sorted(vocab.items())).encode('utf-8')):08x}"
    names = {"coco": f"fidelity_seg_{tag}", "o365": f"fidelity_det_{tag}"}
    if names["coco"] not in MetadataCatalog.list():
        things = [i for i, t in enumerate(seg["is_thing"]) if t]
        stuff = [i for i, t in enumerate(seg["is_thing"]) if not t]
        MetadataCatalog.get(names["coco"]).set(
            thing_classes=[seg["names"][i] for i in things], stuff_classes=list(seg["names"]),
            thing_dataset_id_to_contiguous_id={i: i for i in things},
            stuff_dataset_id_to_contiguous_id={i: i for i in stuff})
        MetadataCatalog.get(names["o365"]).set(thing_classes=list(det["names"]))
    return names


def model_inputs(fixture: dict, datasets: dict[str, str]) -> dict[str, list[dict]]:
    """The fixture batch as our training input {dataset name: [{"image", "instances"}]}."""
    inputs = {}
    for prefix, items in fixture["batch"].items():
        inputs[datasets[prefix]] = []
        for item in items:
            instances = Instances(tuple(item["image"].shape[-2:]))
            instances.gt_classes = item["classes"].clone()
            instances.gt_boxes = Boxes(item["boxes"].clone())
            if "masks_packed" in item:
                instances.gt_masks = unpacked_masks(item)
            inputs[datasets[prefix]].append({"image": item["image"].clone(), "instances": instances})
    return inputs


@functools.lru_cache(maxsize=1)
def _built_model(refdata: Path, seg_dataset: str, det_dataset: str, opts: tuple[str, ...]):
    cfg = setup_cfg(CONFIG, FIXTURE_OPTS + ["DATASETS.TRAIN", f"('{seg_dataset}', '{det_dataset}')"] + list(opts))
    torch.manual_seed(0)
    model = build_model(cfg)
    state = dict(official_state_dict(refdata))
    model_state = model.state_dict()
    for name, _ in model.named_buffers():
        if name in model_state:
            state.setdefault(name, model_state[name])
    load_official_weights(model, state)
    return cfg, model, {k: v.clone() for k, v in model.state_dict().items()}


def build_replay_model(refdata: Path, datasets: dict[str, str], opts: list[str]):
    """Our model in training mode with the regenerated official weights (built once, reset to them on reuse)."""
    cfg, model, initial = _built_model(refdata, datasets["coco"], datasets["o365"], tuple(opts))
    model.load_state_dict(initial)
    model.zero_grad(set_to_none=True)
    return cfg, model.train()


@dataclass
class Replay:
    """What our model did on the fixture batch."""

    losses: dict[str, torch.Tensor]
    targets: dict[str, list[dict]] = field(default_factory=dict)
    matching: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)
    head: dict[str, dict] = field(default_factory=dict)
    unused_draws: dict[str, int] = field(default_factory=dict)
    grad_stats: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (norm, sum); None: no gradient
    named_grads: dict[str, torch.Tensor] = field(default_factory=dict)
    step_stats: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> update (norm, sum, projection)
    named_after: dict[str, torch.Tensor] = field(default_factory=dict)
    numel: dict[str, int] = field(default_factory=dict)
    prompts: dict[str, list[str]] = field(default_factory=dict)


def replay_step(refdata: Path, fixture: dict, opts: list[str] = ()) -> Replay:
    """Our forward, backward, clipping and AdamW step on the fixture batch with the recorded draws."""
    datasets = _register_vocabularies(fixture["vocab"])
    cfg, model = build_replay_model(refdata, datasets, list(opts))
    draws = RecordedDraws(fixture["draws"])
    replay = Replay(losses={})
    for prefix, task in OFFICIAL_DATASETS.items():
        if task in fixture["prompts"]:
            names = Vocabulary.from_metadata(MetadataCatalog.get(datasets[prefix])).names
            replay.prompts[task] = model.lang_encoder.training_prompts(
                names, RecordedDraws(fixture["draws"]).scoped(task), task)[0]

    def criterion_hook(module, args, kwargs, output):
        replay.targets[args[2]] = [{k: v.detach().clone() for k, v in t.items()} for t in args[1]]

    def matcher_hook(module, args, kwargs, output):
        task = kwargs["draws"].prefix.rstrip("/")
        replay.matching[f"{task}/{kwargs['key'].split('/', 1)[1]}"] = [(q.clone(), t.clone()) for q, t in output]

    def head_hook(module, args, kwargs, output):
        replay.head[kwargs["task"]] = {"interm_boxes": output["interm_outputs"]["pred_boxes"].detach().clone(),
                                       "interm_logits": output["interm_outputs"]["pred_logits"].detach().clone(),
                                       "text": args[1].detach().clone(),
                                       "dn_meta": output["dn_meta"]}

    hooks = [model.criterion.register_forward_hook(criterion_hook, with_kwargs=True),
             model.criterion.matcher.register_forward_hook(matcher_hook, with_kwargs=True),
             model.sem_seg_head.register_forward_hook(head_hook, with_kwargs=True)]
    optimizer = build_optimizer(cfg, model)
    before = {n: p.detach().clone() for n, p in model.named_parameters(remove_duplicate=False)}
    try:
        losses = model(model_inputs(fixture, datasets), draws=draws)
    finally:
        for hook in hooks:
            hook.remove()
    prefix_of = {ours: official for official, ours in datasets.items()}
    for key, value in losses.items():
        dataset, _, term = key.partition(".")
        replay.losses[f"{prefix_of[dataset]}.{term}"] = value.detach()
    replay.unused_draws = draws.unused()
    sum(losses.values()).backward()
    params = dict(model.named_parameters(remove_duplicate=False))
    grads = {n: p.grad for n, p in params.items()}
    replay.grad_stats = {n: None if g is None else torch.stack([g.norm(), g.sum()]) for n, g in grads.items()}
    replay.named_grads = {n: named_value(grads, n).clone() for n in fixture["named_grads"]}
    clip_full_model_gradients(optimizer, cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE, cfg.SOLVER.CLIP_GRADIENTS.NORM_TYPE)
    optimizer.step()
    for name, param in params.items():
        replay.numel[name] = param.numel()
        delta = (param.detach() - before.pop(name)).flatten()
        replay.step_stats[name] = torch.stack([delta.norm(), delta.sum(), delta @ projection(name, delta.numel())])
    replay.named_after = {n: named_value({k: p.detach() for k, p in params.items()}, n).clone()
                          for n in fixture["named_after"]}
    return replay
