"""openseed: open-vocabulary segmentation and detection (OpenSeeD, ICCV 2023) on Detectron2.

Importing the package registers its backbones, meta-architecture and datasets with Detectron2's registries.
"""

from openseed import data, modeling  # noqa: F401  (registration side effects)
from openseed.config import add_openseed_config, get_cfg, setup_cfg
from openseed.predictor import Predictor
from openseed.vocabulary import Vocabulary

__all__ = ["add_openseed_config", "get_cfg", "setup_cfg", "Predictor", "Vocabulary"]
