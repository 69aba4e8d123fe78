"""What made an evaluation result: the parts a stored `results.json` must match to be re-used.

`result_fingerprint` returns one JSON-ready dict per part:

- "protocol": the dataset's evaluation protocol (`DatasetProtocol.as_dict`);
- "config": every config key, flattened to dotted names, except `RESULT_NEUTRAL_KEYS` (places, worker counts,
  periods, training-only solver settings, and MODEL.WEIGHTS, which "weights" identifies by content);
- "weights": SHA-256 of the MODEL.WEIGHTS file (cached beside it in `<file>.sha256.json`, keyed by size and
  modification time, so it is read once) and of the evaluated model's tensors in memory (a model trained since it
  was loaded, or randomly initialised, is told apart);
- "annotations": SHA-256 of each annotation file and folder the dataset's metadata names (anything but images;
  hashed on every call, nothing is written into the dataset's folders);
- "vocabulary": the class names and thing flags; "package": the openseed version.

`differences(stored, current)` names the parts (and config keys) that differ; `with_current_citations` reads records
of older versions whose only difference is how they cite the documentation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib import metadata as package_metadata

import torch

from openseed.checkpoint.io import atomic_write

logger = logging.getLogger(__name__)

PARTS = ("protocol", "config", "weights", "annotations", "vocabulary", "package")
RESULT_NEUTRAL_KEYS = frozenset({
    "OUTPUT_DIR", "MODEL.WEIGHTS", "MODEL.TEXT.CACHE_DIR", "DATALOADER.NUM_WORKERS", "SEED", "VIS_PERIOD",
    "TEST.EVAL_PERIOD", "CUDNN_BENCHMARK", "VERSION",
})
RESULT_NEUTRAL_PREFIXES = ("SOLVER.",)  # optimiser settings: the weights are identified by content instead
HASH_CACHE_SUFFIX = ".sha256.json"
# Results written before the design notes moved into the repository cite them as "spec §..." in
# `protocol.size_source`; the section and the sizes are the same, so those records are read with today's citation.
LEGACY_CITATION = "spec §"
CITATION = "docs/official_behaviours.md §"
CHUNK_BYTES = 1 << 24


def package_version() -> str:
    try:
        return package_metadata.version("openseed")
    except package_metadata.PackageNotFoundError:
        return "unknown (not installed)"


def flat_config(cfg, prefix: str = "") -> dict:
    """{dotted key: JSON value} of a CfgNode, result-neutral keys left out."""
    flat = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            flat.update(flat_config(value, f"{name}."))
        elif name not in RESULT_NEUTRAL_KEYS and not name.startswith(RESULT_NEUTRAL_PREFIXES):
            flat[name] = json.loads(json.dumps(value, default=str))
    return flat


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_file_sha256(path: str) -> str:
    """SHA-256 of `path`, re-used from `<path>.sha256.json` when its size and mtime are unchanged (else recomputed
    and the cache rewritten; a folder that cannot be written only logs it)."""
    stat = os.stat(path)
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cache = path + HASH_CACHE_SUFFIX
    try:
        with open(cache, encoding="utf-8") as handle:
            stored = json.load(handle)
        if {k: stored.get(k) for k in key} == key and isinstance(stored.get("sha256"), str):
            return stored["sha256"]
        logger.info(f"{path}: size or modification time changed since {cache}; hashing it again")
    except (OSError, ValueError):
        pass
    digest = file_sha256(path)
    content = json.dumps(dict(key, sha256=digest)).encode("utf-8")
    try:
        atomic_write(cache, lambda handle: handle.write(content))
    except OSError as error:
        logger.info(f"{path}: could not cache its SHA-256 in {cache} ({error}); it will be hashed again next time")
    return digest


def weights_fingerprint(path: str, model=None) -> dict:
    """{"path", "sha256"} of the MODEL.WEIGHTS file (if any) and {"parameters_sha256"} of the model's tensors in
    memory (if it is a module): the file names what was loaded, the parameters what is evaluated (a model trained
    since, or one without weights file, differs there)."""
    fingerprint = {"path": os.path.abspath(path) if path else ""}
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"MODEL.WEIGHTS {path!r} does not exist")
        fingerprint["sha256"] = cached_file_sha256(path)
    if isinstance(model, torch.nn.Module):
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        fingerprint["parameters_sha256"] = digest.hexdigest()
    return fingerprint


def annotation_fingerprint(metadata) -> dict:
    """{metadata key: SHA-256} of every existing file or folder the metadata names, images excepted (a folder's
    hash covers its files' relative names and contents)."""
    hashes = {}
    for key, value in sorted(metadata.as_dict().items()):
        if not isinstance(value, str) or "image" in key or not value or not os.path.exists(value):
            continue
        hashes[key] = file_sha256(value) if os.path.isfile(value) else _folder_sha256(value)
    return hashes


def _folder_sha256(folder: str) -> str:
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, folder).encode("utf-8"))
            digest.update(file_sha256(path).encode("ascii"))
    return digest.hexdigest()


def vocabulary_fingerprint(vocabulary) -> dict:
    return {"names": list(vocabulary.names), "is_thing": [bool(flag) for flag in vocabulary.is_thing]}


def with_current_citations(record: dict) -> dict:
    """A stored results record with a legacy `protocol.size_source` citation rewritten to today's (`CITATION`)."""
    protocol = record.get("protocol")
    source = protocol.get("size_source") if isinstance(protocol, dict) else None
    if not isinstance(source, str) or not source.startswith(LEGACY_CITATION):
        return record
    return {**record, "protocol": {**protocol, "size_source": CITATION + source[len(LEGACY_CITATION):]}}


def differences(stored: dict, current: dict) -> list[str]:
    """Names of the parts of `current` that `stored` lacks or has otherwise; config parts name their keys."""
    found = []
    for part in PARTS:
        if stored.get(part) == current[part]:
            continue
        if part == "config" and isinstance(stored.get(part), dict):
            keys = sorted(k for k in set(stored[part]) | set(current[part])
                          if stored[part].get(k, "<absent>") != current[part].get(k, "<absent>"))
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            found.append(f"config ({shown})")
        else:
            found.append(part)
    return found
