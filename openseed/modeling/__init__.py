"""modeling."""

from openseed.modeling import backbone, pixel_decoder  # noqa: F401  (registers the backbones)
from openseed.modeling import meta_arch  # noqa: F401,E402  (registers OpenSeeD in META_ARCH_REGISTRY)
