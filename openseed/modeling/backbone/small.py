"""A tiny convolutional backbone for CPU configurations and tests.

Input B×3×H×W; outputs `res2..res5` (those in `MODEL.SMALL_BACKBONE.OUT_FEATURES`) at strides 4, 8, 16, 32 with
`MODEL.SMALL_BACKBONE.CHANNELS` channels, each map B×C×⌈H/s⌉×⌈W/s⌉. Every conv is 3×3 + GroupNorm(8) + ReLU:
stem = two stride-2 convs (-> stride 4), then per stage one stride-2 conv (none for res2) and one stride-1 conv.
"""

from __future__ import annotations

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import Tensor, nn

GROUPS = 8
STAGE_NAMES = ("res2", "res3", "res4", "res5")


def conv_gn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(conv, nn.GroupNorm(GROUPS, out_channels), nn.ReLU(inplace=True))


@BACKBONE_REGISTRY.register()
class SmallConvBackbone(Backbone):
    """Four-stage conv net with Detectron2 outputs `res2..res5`."""

    @configurable
    def __init__(self, *, in_channels: int = 3, channels: tuple[int, ...] = (32, 64, 128, 256),
                 out_features: tuple[str, ...] = STAGE_NAMES):
        super().__init__()
        if len(channels) != len(STAGE_NAMES):
            raise ValueError(f"MODEL.SMALL_BACKBONE.CHANNELS needs {len(STAGE_NAMES)} entries, got {list(channels)}")
        if any(c % GROUPS for c in channels):
            raise ValueError(f"MODEL.SMALL_BACKBONE.CHANNELS must be multiples of {GROUPS}, got {list(channels)}")
        unknown = [name for name in out_features if name not in STAGE_NAMES]
        if unknown:
            raise ValueError(f"MODEL.SMALL_BACKBONE.OUT_FEATURES has {unknown}; available: {list(STAGE_NAMES)}")
        self.stem = nn.Sequential(conv_gn_relu(in_channels, channels[0], 2), conv_gn_relu(channels[0], channels[0], 2))
        stages = []
        for index, width in enumerate(channels):
            first = [] if index == 0 else [conv_gn_relu(channels[index - 1], width, 2)]
            stages.append(nn.Sequential(*first, conv_gn_relu(width, width, 1)))
        self.stages = nn.ModuleList(stages)
        self._out_features = [name for name in STAGE_NAMES if name in out_features]
        self._out_feature_channels = dict(zip(STAGE_NAMES, channels))
        self._out_feature_strides = {name: 4 * 2**i for i, name in enumerate(STAGE_NAMES)}

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec | None = None):
        return {
            "in_channels": input_shape.channels if input_shape is not None else len(cfg.MODEL.PIXEL_MEAN),
            "channels": tuple(cfg.MODEL.SMALL_BACKBONE.CHANNELS),
            "out_features": tuple(cfg.MODEL.SMALL_BACKBONE.OUT_FEATURES),
        }

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x: B×3×H×W -> {name: B×C×⌈H/s⌉×⌈W/s⌉} for the configured outputs."""
        if x.dim() != 4:
            raise ValueError(f"SmallConvBackbone expects a B×C×H×W tensor, got shape {tuple(x.shape)}")
        x = self.stem(x)
        outputs = {}
        for name, stage in zip(STAGE_NAMES, self.stages):
            x = stage(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
                for name in self._out_features}

    @property
    def size_divisibility(self) -> int:
        return 32
