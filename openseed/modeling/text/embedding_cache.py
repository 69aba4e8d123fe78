"""Store of evaluation-time vocabulary embeddings: a small in-memory LRU and an optional directory on disk.

The caller builds the keys. The memory key identifies names, normalisation and templates only, so the owner must
`clear_memory()` whenever its weights change; the disk key must also identify the weights (a hash of their values).
Disk files are written atomically (temporary file + rename) and read with `torch.load(weights_only=True)`; a file
that cannot be read or does not match is reported and ignored (the caller recomputes and overwrites it).
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


class EmbeddingCache:
    """Vocabulary embeddings K×D by key.

    Args:
        cache_dir: directory for `text_embeddings_<key>.pt` files; empty/None keeps the cache in memory only.
        max_entries: in-memory entries kept (least recently used dropped first).
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, max_entries: int = 8):
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.max_entries = max_entries
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()  # Predictor calls from several threads share one cache

    @property
    def on_disk(self) -> bool:
        return self.cache_dir is not None

    def get(self, key: str) -> torch.Tensor | None:
        """The in-memory entry for `key`, or None."""
        with self._lock:
            if key not in self._memory:
                return None
            self._memory.move_to_end(key)
            return self._memory[key]

    def put(self, key: str, embeddings: torch.Tensor) -> None:
        with self._lock:
            self._memory[key] = embeddings.detach()
            self._memory.move_to_end(key)
            while len(self._memory) > self.max_entries:
                self._memory.popitem(last=False)

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()

    @property
    def num_in_memory(self) -> int:
        """Entries held in memory (at most `max_entries`)."""
        return len(self._memory)

    def path(self, disk_key: str) -> Path:
        if self.cache_dir is None:
            raise ValueError("this embedding cache has no directory (MODEL.TEXT.CACHE_DIR is empty)")
        return self.cache_dir / f"text_embeddings_{disk_key}.pt"

    def load(self, disk_key: str, names: tuple[str, ...]) -> torch.Tensor | None:
        """Embeddings (CPU, K×D) stored under `disk_key` for exactly these `names`, or None (absent or unusable)."""
        path = self.path(disk_key)
        if not path.is_file():
            return None
        try:
            record = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as error:
            logger.warning("ignoring unreadable text-embedding cache file %s (%s); recomputing", path, error)
            return None
        embeddings = record.get("embeddings") if isinstance(record, dict) else None
        if (
            not isinstance(embeddings, torch.Tensor)
            or embeddings.dim() != 2
            or tuple(record.get("names", ())) != tuple(names)
            or embeddings.shape[0] != len(names)
        ):
            logger.warning("ignoring text-embedding cache file %s: it does not hold embeddings for these names", path)
            return None
        return embeddings

    def save(self, disk_key: str, names: tuple[str, ...], embeddings: torch.Tensor) -> Path:
        """Write `{"names", "embeddings"}` atomically; returns the file path."""
        path = self.path(disk_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"names": list(names), "embeddings": embeddings.detach().float().cpu()}
        handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as tmp_file:
                torch.save(record, tmp_file)
            os.replace(tmp_name, path)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return path
