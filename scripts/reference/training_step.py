#!/usr/bin/env python3
"""Record one official OpenSeeD training step as a fidelity fixture (reference harness; never imported by the package,
never run by CI).

usage: training_step.py {seg,det,joint} [--seed S] [--size H [W]] [--names JSON] [--out FILE] [--ref-dir DIR]

Builds the official decoupled Swin-T model (commit 5dc694e, set up by ../shared/reference/setup.sh under --ref-dir)
with the regenerated weights of ../shared/refdata/parity_regen_spec.json, feeds a synthetic batch of 2 images per
dataset in training mode (seg: COCO-panoptic-like, things and stuff; det: Objects365-like, boxes only; joint: both in
one backward, as training runs) and stores in `--out` (torch.save of plain tensors/lists/dicts, `weights_only`
loadable):

  batch      the inputs (images, classes, xyxy boxes, masks) and the vocabularies
  targets    what the official `prepare_targets` built (labels, normalised cxcywh boxes, padded masks);
             masks are stored bit-packed ("masks_packed": np.packbits along W, "mask_width")
  prompts    the prompt text the official code built per class, per task
  draws      every random draw of the forward, keyed where it was drawn (see `Recorder`):
             "{task}/templates" (template id per class), "{task}/synonyms" (synonym index per class, det),
             "{task}/dn_noise" (the uniform box noise, (groups·N, 4) as drawn), "{task}/match_points/{set}" (one
             (1, P, 2) per image), "{task}/mask_points/{set}" (candidates, then fresh points); a uniform draw is
             stored as {"rng_state": CPU generator state before it, "shape", "sum"} (values regenerate exactly)
  matching   "{task}/{set}" -> per image (query ids, target ids); sets "0" (last layer), "1".."9" (aux, 1 = initial
             prediction), "0_interm" (encoder proposals); "dn" -> groups, group size; "interm" -> proposal boxes
  losses     every weighted loss term by its official key ("coco." / "o365." prefix), and the total
  grads      per-parameter gradient norm and sum (every name, aliases included), full gradient of `NAMED`
  step       after full-model clipping and one AdamW step with the official parameter groups (train_net.py
             `Trainer.build_optimizer`): per-parameter norm, sum and seeded projection of (after - before), and the
             full values of `NAMED` after the step

Fixture choices (the model config is the official one otherwise): Swin DROP_PATH_RATE 0 (stochastic depth is timm's,
not replayed), fp32 on CPU without AMP, `criterion_*.num_classes` pinned to the batch vocabulary size (the official
forward hard-codes 133 / 365, the sizes of its full vocabularies).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.abspath(os.path.join(HERE, "..", "..", "..", "..", "shared"))
CONFIG = "configs/openseed/openseed_swint_lang_o365_decouple.yaml"
SEG_NAMES = ["person", "bicycle", "car", "dog", "cat", "bottle", "chair", "dining table", "potted plant",
             "traffic light", "umbrella", "teddy bear", "sky-other-merged", "wall-brick", "grass-merged", "road",
             "tree-merged", "water-other", "floor-wood", "building-other-merged"]
SEG_THINGS = 12
DET_NAMES = ["Person", "Sneakers", "Chair", "Hat", "Lamp", "Bottle", "Cup", "Street Lights", "Cabinet/shelf",
             "Handbag/Satchel", "Bracelet", "Plate", "Picture/Frame", "Helmet", "Book", "Gloves", "Storage box", "Boat",
             "Leather Shoes", "Flower", "Hot-air balloon", "Moniter/TV"]
# full gradients and after-step values are stored for these (official names); [:64] keeps the first 64 rows
NAMED = ["sem_seg_head.predictor.lang_encoder.lang_proj[:64]",
         "sem_seg_head.predictor.lang_encoder.logit_scale",
         "sem_seg_head.predictor.decoder.layers.0.linear2.bias",
         "sem_seg_head.predictor.decoder.layers.0.linear1.bias",
         "sem_seg_head.predictor.class_embed[:64]",
         "backbone.layers.0.blocks.1.attn.qkv.bias",
         "backbone.layers.3.blocks.0.attn.qkv.bias",
         "sem_seg_head.pixel_decoder.transformer.level_embed"]


# ----------------------------------------------------------------------------------------------------- parent side
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=("seg", "det", "joint"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, nargs="+", default=[256], help="H [W] of every image (256–384)")
    parser.add_argument("--names", default="", help='JSON {"seg": {"names", "is_thing"}, "det": {"names"}}')
    parser.add_argument("--out", required=True)
    parser.add_argument("--ref-dir", default=os.environ.get("REF_DIR", "/tmp/ref"))
    parser.add_argument("--refdata", default=os.environ.get("OPENSEED_REFDATA", os.path.join(SHARED, "refdata")))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with open(os.path.join(args.ref_dir, "env.json"), encoding="utf-8") as f:
        env_info = json.load(f)
    vocab = {"seg": {"names": SEG_NAMES, "is_thing": [i < SEG_THINGS for i in range(len(SEG_NAMES))]},
             "det": {"names": DET_NAMES}}
    if args.names:
        with open(args.names, encoding="utf-8") as f:
            vocab.update(json.load(f))
    size = (args.size[0], args.size[-1])
    spec = {"case": args.case, "seed": args.seed, "size": size, "vocab": vocab, "out": os.path.abspath(args.out),
            "code": env_info["code"], "clip_tokenizer": env_info["clip_tokenizer"], "threads": args.threads,
            "regen_spec": os.path.join(os.path.abspath(args.refdata), "parity_regen_spec.json"),
            "commit": env_info["commit"], "named": NAMED}
    env = dict(os.environ, PYTHONPATH=env_info["pythonpath"] + os.pathsep + HERE, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore", PYTHONHASHSEED="0")
    # cwd: the official code's root, so that its `openseed` package is imported, never the project's
    return subprocess.call([env_info["python"], os.path.join(HERE, "training_step_child.py"), json.dumps(spec)],
                           env=env, cwd=env_info["code"])


if __name__ == "__main__":
    sys.exit(main())
