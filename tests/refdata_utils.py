"""Readers for the official reference data in `../shared/refdata/` (see its README).

`official_state_dict(refdata)` regenerates the parity fixture's official-layout weights (recipe `openseed-regen-v1`:
per key, `torch.randn` seeded with `crc32(key)`, scaled and shifted; tied keys share one tensor; buffers omitted).
"""

from __future__ import annotations

import functools
import json
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image


@functools.lru_cache(maxsize=2)
def official_state_dict(refdata: Path) -> dict[str, torch.Tensor]:
    """Official-layout state dict (keys as in `openseed_swint_o365_decouple_keys.txt`, minus buffers)."""
    spec = json.loads((Path(refdata) / "parity_regen_spec.json").read_text())
    salt = spec.get("salt", "")
    state = {}
    for entry in spec["entries"]:
        key, kind = entry["key"], entry["kind"]
        if kind == "randn":
            seed = entry.get("seed", zlib.crc32((key + salt).encode("utf-8")))
            gen = torch.Generator().manual_seed(seed)
            state[key] = torch.randn(entry["shape"], generator=gen, dtype=torch.float32) * entry["std"] + entry["mean"]
        elif kind == "tied":
            state[key] = state[entry["tie_to"]]
        elif kind != "buffer":
            raise ValueError(f"unknown entry kind {kind!r} for {key}")
    return state


def official_substate(refdata: Path, prefix: str) -> dict[str, torch.Tensor]:
    """Entries of the official state dict under `prefix` (e.g. "backbone."), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in official_state_dict(refdata).items() if k.startswith(prefix)}


@functools.lru_cache(maxsize=1)
def official_outputs(refdata: Path) -> dict:
    """The official eval-mode outputs on the parity input (trusted test data, pickled dict)."""
    return torch.load(Path(refdata) / "parity_regen_outputs.pt", weights_only=False)


def parity_vocabulary(refdata: Path) -> dict:
    """`parity_vocab.json`: 143 names, thing flags, the 81 prompt templates."""
    return json.loads((Path(refdata) / "parity_vocab.json").read_text())


def parity_image(refdata: Path) -> torch.Tensor:
    """The 512x512 parity input as uint8 3xHxW RGB."""
    array = np.asarray(Image.open(Path(refdata) / "parity_input_512.png").convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def official_keys(refdata: Path, decoupled: bool = True) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype) rows of an official state-dict layout file."""
    name = "openseed_swint_o365_decouple_keys.txt" if decoupled else "openseed_swint_lang_keys.txt"
    rows = []
    for line in (Path(refdata) / name).read_text().splitlines():
        key, shape, dtype = line.split("\t")
        rows.append((key, tuple(int(s) for s in shape.strip("()").split(",") if s.strip()), dtype))
    return rows


def parity_model(refdata: Path, opts: list[str] | tuple[str, ...] = ()):
    """(model in eval mode on CPU with the regenerated official weights, parity `Vocabulary`): the model of
    tests/modeling/test_model_parity.py, with extra config `opts`."""
    from detectron2.modeling import build_model

    from openseed.checkpoint import load_official_weights
    from openseed.config import setup_cfg
    from openseed.vocabulary import Vocabulary

    torch.manual_seed(0)
    cfg = setup_cfg("configs/openseed/swint_decoupled_coco_o365.yaml",
                    ["MODEL.DEVICE", "cpu", "DATASETS.CLASS_NAME_NORMALISATION", "reference", *opts])
    model = build_model(cfg).eval()
    state = dict(official_state_dict(refdata))
    model_state = model.state_dict()
    for name, _ in model.named_buffers():  # deterministic buffers are not in the regenerated state dict
        if name in model_state:
            state.setdefault(name, model_state[name])
    load_official_weights(model, state)
    names = parity_vocabulary(refdata)
    return model, Vocabulary(tuple(names["names"]), tuple(bool(t) for t in names["is_thing"]))
