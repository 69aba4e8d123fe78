"""Child process of training_step.py: runs inside the official code (cwd and sys.path), records one training step.

Random draws are captured where the official code makes them, by replacing the module globals it draws through
(`torch` in the decoder and matcher modules and in Detectron2's point_features, `np` in utils/prompt_engineering,
`random` in the decoupled model module) with recording proxies; the drawn values are returned unchanged. The key
under which a draw is stored comes from the call being executed (wrapped official methods set it).
"""

from __future__ import annotations

import json
import os
import random as py_random
import sys
import zlib
from collections import defaultdict

import numpy as np
import torch


class Recorder:
    """Draws by key, in call order; `context` is the key the next draw belongs to."""

    def __init__(self):
        self.draws = defaultdict(list)
        self.context = None
        self.unexpected = []

    def add(self, value, what: str):
        if self.context is None:
            self.unexpected.append(what)
        else:
            self.draws[self.context].append(value)


class RecordingTorch:
    """Stands for the `torch` module inside one official module; records each rand/rand_like draw compactly as the
    CPU generator state before it, its shape and the float64 sum of the values (the replay regenerates the values
    from the state and checks the sum)."""

    def __init__(self, recorder: Recorder, tag: str):
        self._recorder, self._tag = recorder, tag

    def __getattr__(self, name):
        return getattr(torch, name)

    def _record(self, draw, what, *args, **kwargs):
        state = torch.get_rng_state()
        out = draw(*args, **kwargs)
        assert out.device.type == "cpu" and out.dtype == torch.float32, (what, out.device, out.dtype)
        self._recorder.add({"rng_state": state, "shape": list(out.shape), "sum": out.double().sum()}, what)
        return out

    def rand(self, *args, **kwargs):
        return self._record(torch.rand, f"{self._tag}.rand", *args, **kwargs)

    def rand_like(self, *args, **kwargs):
        return self._record(torch.rand_like, f"{self._tag}.rand_like", *args, **kwargs)


class RecordingNumpy:
    """Stands for `np` in utils/prompt_engineering: records `np.random.randint`."""

    def __init__(self, recorder: Recorder):
        outer = self

        class _Random:
            def __getattr__(self, name):
                return getattr(np.random, name)

            def randint(self, *args, **kwargs):
                out = np.random.randint(*args, **kwargs)
                outer._recorder.add(int(out), "np.random.randint")
                return out

        self._recorder, self.random = recorder, _Random()

    def __getattr__(self, name):
        return getattr(np, name)


class RecordingRandom:
    """Stands for `random` in the decoupled model module: records the index `random.sample(names, 1)` picked."""

    def __init__(self, recorder: Recorder):
        self._recorder = recorder

    def __getattr__(self, name):
        return getattr(py_random, name)

    def sample(self, population, k):
        out = py_random.sample(population, k)
        self._recorder.add(population.index(out[0]), "random.sample")
        return out


def regenerate_weights(spec_path: str) -> dict:
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    salt, state = spec.get("salt", ""), {}
    for entry in spec["entries"]:
        key, kind = entry["key"], entry["kind"]
        if kind == "randn":
            gen = torch.Generator().manual_seed(entry.get("seed", zlib.crc32((key + salt).encode("utf-8"))))
            state[key] = torch.randn(entry["shape"], generator=gen, dtype=torch.float32) * entry["std"] + entry["mean"]
        elif kind == "tied":
            state[key] = state[entry["tie_to"]]
    return state


def official_train_names(names: list[str]) -> list[str]:
    """What the official OpenSeeD.__init__ does to COCO training names (suffixes dropped, "a-b" -> "b a")."""
    out = []
    for name in names:
        name = name.replace("-merged", "").replace("-other", "").replace("-stuff", "")
        parts = name.split("-")
        out.append(parts[1] + " " + parts[0] if len(parts) == 2 else name)
    return out


def build(spec: dict):
    sys.path.insert(0, spec["code"])
    from openseed import build_model
    from openseed.BaseModel import BaseModel
    from utils.arguments import load_opt_from_config_files

    cfg = load_opt_from_config_files([os.path.join(spec["code"], "configs/openseed/openseed_swint_lang_o365_decouple.yaml")])
    cfg["MODEL"]["TEXT"]["PRETRAINED_TOKENIZER"] = spec["clip_tokenizer"]
    cfg["MODEL"]["BACKBONE"]["LOAD_PRETRAINED"] = False
    cfg["MODEL"]["BACKBONE"]["SWIN"]["DROP_PATH_RATE"] = 0.0
    cfg["DATASETS"]["TRAIN"] = ["coco_2017_train_panoptic", "object365_train_od"]
    torch.manual_seed(spec["seed"])
    model = BaseModel(cfg, build_model(cfg))
    state = regenerate_weights(spec["regen_spec"])
    result = model.model.load_state_dict(state, strict=False)
    buffers = {n for n, _ in model.model.named_buffers()}
    assert not result.unexpected_keys, result.unexpected_keys
    assert set(result.missing_keys) <= buffers, sorted(set(result.missing_keys) - buffers)[:5]
    return cfg, model


def pin_num_classes(criterion, num_classes: int) -> None:
    """The official forward sets num_classes to 133 / 365 (its full vocabularies); keep the batch vocabulary's."""
    base = type(criterion)
    criterion.__class__ = type(f"Pinned{base.__name__}", (base,), {
        "num_classes": property(lambda self: num_classes, lambda self, value: None)})


def batch_inputs(spec: dict, vocab: dict):
    from detectron2.structures import Boxes, Instances

    from training_batches import detection_batch, segmentation_batch

    size, seed = tuple(spec["size"]), spec["seed"]
    raw = {}
    if spec["case"] in ("seg", "joint"):
        raw["coco"] = segmentation_batch(2, size, vocab["seg"]["is_thing"], seed * 10 + 1)
    if spec["case"] in ("det", "joint"):
        raw["o365"] = detection_batch(2, size, len(vocab["det"]["names"]), seed * 10 + 2)
    inputs = {}
    for dataset, items in raw.items():
        inputs[dataset] = []
        for item in items:
            inst = Instances(tuple(item["image"].shape[-2:]))
            inst.gt_classes = item["classes"].clone()
            inst.gt_boxes = Boxes(item["boxes"].clone())
            if "masks" in item:
                inst.gt_masks = item["masks"].clone()
            inputs[dataset].append({"image": item["image"].clone(), "instances": inst,
                                    "height": size[0], "width": size[1]})
    return raw, inputs


def install_recorders(model, recorder: Recorder) -> dict:
    """Proxies for the drawing modules and wrappers that set the draw key; returns the capture dict."""
    import detectron2.projects.point_rend.point_features as point_features
    import openseed.architectures.openseed_model_decouple_train as arch
    import openseed.body.decoder.openseed_decoder_decouple as decoder_module
    import openseed.language.encoder as text_encoder_module
    import openseed.modules.matcher as matcher_module
    import utils.prompt_engineering as prompts

    inner = model.model
    decoder_module.torch = RecordingTorch(recorder, "dn")
    matcher_module.torch = RecordingTorch(recorder, "matcher")
    point_features.torch = RecordingTorch(recorder, "point_features")
    prompts.np = RecordingNumpy(recorder)
    arch.random = RecordingRandom(recorder)
    capture = {"targets": {}, "matching": {}, "head": {}, "prompts": defaultdict(list), "task": None}
    prompt_engineering = text_encoder_module.prompt_engineering

    def prompt_engineering_recorded(*args, **kwargs):
        text = prompt_engineering(*args, **kwargs)
        capture["prompts"][capture["task"]].append(text)
        return text

    text_encoder_module.prompt_engineering = prompt_engineering_recorded

    forward_seg = inner.forward_seg

    def forward_seg_recorded(batched_inputs, task="seg"):
        capture["task"] = task
        recorder.context = f"{task}/synonyms" if task == "det" else f"{task}/templates"
        return forward_seg(batched_inputs, task=task)

    inner.forward_seg = forward_seg_recorded

    get_text = inner.sem_seg_head.predictor.lang_encoder.get_text_embeddings

    def get_text_recorded(*args, **kwargs):
        recorder.context = f"{capture['task']}/templates"
        out = get_text(*args, **kwargs)
        recorder.context = None
        return out

    inner.sem_seg_head.predictor.lang_encoder.get_text_embeddings = get_text_recorded

    prepare_targets = inner.prepare_targets

    def prepare_targets_recorded(targets, images, task="seg"):
        out = prepare_targets(targets, images, task=task)
        capture["targets"][task] = out
        recorder.context = f"{task}/dn_noise"
        return out

    inner.prepare_targets = prepare_targets_recorded

    def head_hook(module, args, output):
        capture["head"][capture["task"]] = output
        recorder.context = None

    inner.sem_seg_head.register_forward_hook(head_hook)

    def set_name(outputs) -> str:
        head_out, mask_dict = capture["head"][capture["task"]]
        if outputs is head_out.get("interm_outputs"):
            return "0_interm"
        for i, aux in enumerate(head_out["aux_outputs"]):
            if outputs is aux:
                return str(i + 1)
        if mask_dict is not None:
            dn_out = mask_dict["output_known_lbs_bboxes"]
            if outputs is dn_out:
                return "0_dn"
            for i, aux in enumerate(dn_out["aux_outputs"]):
                if outputs is aux:
                    return f"{i + 1}_dn"
        return "0"

    matcher = inner.criterion_coco.matcher
    assert matcher is inner.criterion_o365.matcher
    match = matcher.memory_efficient_forward

    def match_recorded(outputs, targets, cost=("cls", "box", "mask"), split_pano=None):
        name = set_name(outputs)
        recorder.context = f"{capture['task']}/match_points/{name}"
        indices = match(outputs, targets, cost, split_pano=split_pano)
        recorder.context = None
        capture["matching"][f"{capture['task']}/{name}"] = [(i.clone(), j.clone()) for i, j in indices]
        return indices

    matcher.memory_efficient_forward = match_recorded
    for criterion in (inner.criterion_coco, inner.criterion_o365):
        def masks_recorded(outputs, targets, indices, num_masks, layer_id=None, extra=None, _loss=criterion.loss_masks):
            recorder.context = f"{capture['task']}/mask_points/{set_name(outputs)}"
            out = _loss(outputs, targets, indices, num_masks, layer_id=layer_id, extra=extra)
            recorder.context = None
            return out

        criterion.loss_masks = masks_recorded
    return capture


def packed(item: dict) -> dict:
    """Boolean masks N×H×W stored as np.packbits along W (uint8 N×H×⌈W/8⌉) under "masks_packed", with "mask_width"."""
    if "masks" not in item:
        return item
    masks = item.pop("masks").bool()
    item["masks_packed"] = torch.from_numpy(np.packbits(masks.numpy(), axis=-1))
    item["mask_width"] = int(masks.shape[-1])
    return item


def named_value(tensors: dict, name: str) -> torch.Tensor:
    base, _, rows = name.partition("[:")
    value = tensors[base]
    return value[: int(rows.rstrip("]"))] if rows else value


def projection(key: str, numel: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    return torch.randint(0, 2, (numel,), generator=gen).float() * 2 - 1


def optimizer_of(cfg, model):
    """The official optimizer: train_net.py `Trainer.build_optimizer` (param groups, AdamW, full-model clipping).

    train_net.py itself cannot be imported here (its dataset imports need Detectron2's compiled ops), so the
    method's source is taken from the file and executed with the names it uses.
    """
    import ast
    import copy
    import itertools
    import logging
    from typing import Any, Dict, List, Set

    path = os.path.join(os.getcwd(), "train_net.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    method = next(n for n in trainer.body if isinstance(n, ast.FunctionDef) and n.name == "build_optimizer")
    method.decorator_list = []
    namespace = {"copy": copy, "itertools": itertools, "torch": torch, "logger": logging.getLogger("train_net"),
                 "is_main_process": lambda: True, "List": List, "Dict": Dict, "Any": Any, "Set": Set}
    exec(compile(ast.Module([method], []), path, "exec"), namespace)
    return namespace["build_optimizer"](None, cfg, model)


def run(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    cfg, model = build(spec)
    inner = model.model
    vocab = spec["vocab"]
    inner.train_class_names["seg"] = official_train_names(vocab["seg"]["names"])
    inner.train_class_names["det"] = [n.lower().split("/") for n in vocab["det"]["names"]]
    pin_num_classes(inner.criterion_coco, len(vocab["seg"]["names"]))
    pin_num_classes(inner.criterion_o365, len(vocab["det"]["names"]))
    raw, inputs = batch_inputs(spec, vocab)
    model.train()
    optimizer = optimizer_of(cfg, model)
    before = {n: p.detach().clone() for n, p in inner.named_parameters(remove_duplicate=False)}

    recorder = Recorder()
    capture = install_recorders(model, recorder)
    torch.manual_seed(spec["seed"])
    np.random.seed(spec["seed"])
    py_random.seed(spec["seed"])
    losses = model(inputs)
    total = sum(losses.values())
    total.backward()
    assert not recorder.unexpected, f"draws outside a known context: {recorder.unexpected}"

    params = dict(inner.named_parameters(remove_duplicate=False))
    grads = {n: p.grad for n, p in params.items()}
    grad_stats = {n: (torch.zeros(2) if g is None else torch.stack([g.norm(), g.sum()])) for n, g in grads.items()}
    named_grads = {n: named_value(grads, n).clone() for n in spec["named"]}
    optimizer.step()
    after = dict(inner.named_parameters(remove_duplicate=False))
    step_stats, named_after = {}, {}
    for name, value in after.items():
        delta = (value.detach() - before[name]).flatten()
        step_stats[name] = torch.stack([delta.norm(), delta.sum(), delta @ projection(name, delta.numel())])
    for name in spec["named"]:
        named_after[name] = named_value({n: v.detach() for n, v in after.items()}, name).clone()

    head = {}
    for task, (outputs, mask_dict) in capture["head"].items():
        head[task] = {"interm_boxes": outputs["interm_outputs"]["pred_boxes"].detach().clone(),
                      "interm_logits": outputs["interm_outputs"]["pred_logits"].detach().clone(),
                      "dn": None if mask_dict is None else {"scalar": int(mask_dict["scalar"]),
                                                            "pad_size": int(mask_dict["pad_size"])}}
    targets = {task: [packed({k: v.clone() for k, v in t.items() if v is not None}) for t in ts]
               for task, ts in capture["targets"].items()}
    raw = {dataset: [packed(item) for item in items] for dataset, items in raw.items()}
    return {
        "format": "openseed-training-step-v1",
        "case": spec["case"], "seed": spec["seed"], "size": list(spec["size"]), "vocab": vocab,
        "official_commit": spec["commit"], "torch": str(torch.__version__),
        "batch": raw, "targets": targets, "prompts": dict(capture["prompts"]),
        "draws": {k: v for k, v in recorder.draws.items()},
        "matching": capture["matching"], "head": head,
        "losses": {k: v.detach().clone() for k, v in losses.items()}, "total": total.detach().clone(),
        "grad_stats": grad_stats, "named_grads": named_grads,
        "step_stats": step_stats, "named_after": named_after,
        "optimizer": {"groups": len(optimizer.param_groups),
                      "clip": float(cfg["SOLVER"]["CLIP_GRADIENTS"]["CLIP_VALUE"]),
                      "lr": [g["lr"] for g in optimizer.param_groups],
                      "weight_decay": [g["weight_decay"] for g in optimizer.param_groups]},
    }


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    record = run(job)
    tmp = job["out"] + ".tmp"
    torch.save(record, tmp)
    os.replace(tmp, job["out"])
    print(f"wrote {job['out']}: {len(record['losses'])} loss terms, total {float(record['total']):.6f}, "
          f"{sum(len(v) for v in record['draws'].values())} draws under {len(record['draws'])} keys")
