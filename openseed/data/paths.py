"""Where datasets live on disk: `$DETECTRON2_DATASETS` (Detectron2's variable), read by the registrations and by the
synthetic-data generators alike (so neither package imports the other for it)."""

from __future__ import annotations

import os


def datasets_root() -> str:
    """`$DETECTRON2_DATASETS`, default `datasets` (relative to the working directory), user-expanded."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
