"""modeling."""

# Imported for their registrations: the backbones (BACKBONE_REGISTRY) and OpenSeeD (META_ARCH_REGISTRY).
from openseed.modeling import backbone, meta_arch, pixel_decoder  # noqa: F401
