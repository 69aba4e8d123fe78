"""Swin Transformer (Swin-T / Swin-L) as a Detectron2 backbone, key- and number-compatible with official OpenSeeD.

Input: a normalised image batch B×3×H×W (H, W multiples of 32 in practice; any size works). Output: a dict with
`res2..res5` (those in `MODEL.SWIN.OUT_FEATURES`), each B×C_s×ceil(H/s)×ceil(W/s) for strides s = 4, 8, 16, 32 and
channels C, 2C, 4C, 8C (C = `EMBED_DIM`), each passed through its own LayerNorm (`norm0..norm3`).

The blocks are written here instead of wrapping `timm.models.swin_transformer`, because timm's Swin differs from the
official OpenSeeD/Swin-for-dense-prediction code in ways that break checkpoint keys or numbers:
  * timm down-samples at the *start* of a stage (`layers.{s+1}.downsample`), official at the *end*
    (`layers.{s}.downsample`), and timm has no per-stage output norms (`norm0..norm3`);
  * timm keeps `relative_position_index` out of the state dict; official checkpoints carry it;
  * timm shifts (rolls) the map before padding it to a multiple of the window and masks on the unpadded layout;
    the official block pads first, then rolls, and builds its shift mask on the padded map. Outputs therefore differ
    whenever a stage's size is not a multiple of the window (e.g. res5 = 16×16 at 512² with window 7).
Generic timm layers (`Mlp`, `DropPath`, `trunc_normal_`) are reused; their parameter names match the official ones.

Official numerics kept on purpose: zero padding to window multiples *after* `norm1` (padded tokens take part in
attention as zero inputs; they are not masked), the shift mask value -100 (not -inf), `q * scale` before `q @ kᵀ`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

SHIFT_MASK_VALUE = -100.0


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """B×H×W×C (H, W multiples of `window_size`) -> (B·nW)×(window_size²)×C, windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_merge(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `window_partition`: (B·nW)×(window_size²)×C -> B×height×width×C."""
    c = windows.shape[-1]
    x = windows.view(-1, height // window_size, width // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def relative_position_index(window_size: int) -> torch.Tensor:
    """(ws²)×(ws²) int64 index into the (2ws-1)² bias table: (dy + ws - 1)·(2ws - 1) + (dx + ws - 1)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
    coords = coords.flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return relative[..., 0] * (2 * window_size - 1) + relative[..., 1]


def shifted_window_mask(
    padded_height: int, padded_width: int, window_size: int, shift: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Attention mask nW×(ws²)×(ws²) for shifted windows on a padded map: 0 within a region, -100 across regions.

    Regions are the 3×3 bands [0, -ws), [-ws, -shift), [-shift, end) along each axis of the *padded* map, numbered
    row-major, as in the official implementation.
    """
    bands = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
    region = torch.zeros((1, padded_height, padded_width, 1), device=device)
    for index, (rows, cols) in enumerate((r, c) for r in bands for c in bands):
        region[:, rows, cols, :] = index
    region_windows = window_partition(region, window_size).squeeze(-1)
    different = region_windows.unsqueeze(1) != region_windows.unsqueeze(2)
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill(different, SHIFT_MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias per head.

    `forward(x, mask)`: x (B·nW)×N×C with N = window_size², mask None or nW×N×N additive; returns (B·nW)×N×C.
    """

    def __init__(self, dim, window_size, num_heads, qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Swin stage width {dim} is not divisible by its {num_heads} heads")
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        num_windows_total, n, c = x.shape
        qkv = self.qkv(x).reshape(num_windows_total, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            num_windows = mask.shape[0]
            attn = attn.view(-1, num_windows, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(num_windows_total, n, c)
        return self.proj_drop(self.proj(x))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention block. `forward(x B×H×W×C, shift_mask) -> B×H×W×C`."""

    def __init__(self, dim, num_heads, window_size, shift_size, mlp_ratio, qkv_bias, qk_scale, drop, attn_drop, drop_path):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"Swin shift {shift_size} must lie in [0, window size {window_size})")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x: torch.Tensor, shift_mask: torch.Tensor) -> torch.Tensor:
        _, h, w, c = x.shape
        ws, shift = self.window_size, self.shift_size
        y = F.pad(self.norm1(x), (0, 0, 0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws))
        padded_h, padded_w = y.shape[1:3]
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        y = self.attn(window_partition(y, ws), mask=shift_mask if shift else None)
        y = window_merge(y, ws, padded_h, padded_w)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        x = x + self.drop_path(y[:, :h, :w, :])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2×2 neighbourhood concat (zero-padding odd sizes), LayerNorm(4C), linear 4C->2C: B×H×W×C -> B×⌈H/2⌉×⌈W/2⌉×2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """`depth` blocks alternating plain/shifted windows, then optional patch merging.

    `forward(x B×H×W×C) -> (stage output B×H×W×C, next stage input)`.
    """

    def __init__(self, dim, depth, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale, drop, attn_drop,
                 drop_path: list[float], downsample: bool, use_checkpoint: bool):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else self.shift_size, mlp_ratio, qkv_bias,
                      qk_scale, drop, attn_drop, drop_path[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ws = self.window_size
        # the padding of `SwinBlock`; not `-(-h // ws) * ws`: an exported graph divides integers by truncation
        # (ONNX Div), which rounds the negative quotient up and loses a window row/column at other sizes
        padded_h = x.shape[1] + (ws - x.shape[1] % ws) % ws
        padded_w = x.shape[2] + (ws - x.shape[2] % ws) % ws
        mask = shifted_window_mask(padded_h, padded_w, ws, self.shift_size, x.device, x.dtype)
        for block in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                x = checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
        return x, (self.downsample(x) if self.downsample is not None else x)


class PatchEmbed(nn.Module):
    """Conv k=s=patch (zero-padding to a patch multiple) + optional LayerNorm: B×3×H×W -> B×h×w×C (channels last)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, patch_norm: bool):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        x = F.pad(x, (0, (p - x.shape[3] % p) % p, 0, (p - x.shape[2] % p) % p))
        x = self.proj(x).permute(0, 2, 3, 1)
        return self.norm(x) if self.norm is not None else x


@BACKBONE_REGISTRY.register()
class D2SwinTransformer(Backbone):
    """Swin backbone with Detectron2 outputs `res2..res5` (strides 4..32), built from `cfg.MODEL.SWIN.*`."""

    @configurable
    def __init__(
        self,
        *,
        pretrain_img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.3,
        ape: bool = False,
        patch_norm: bool = True,
        out_features: tuple[str, ...] = ("res2", "res3", "res4", "res5"),
        use_checkpoint: bool = False,
    ):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"MODEL.SWIN.DEPTHS {list(depths)} and NUM_HEADS {list(num_heads)} differ in length")
        stage_names = [f"res{i + 2}" for i in range(len(depths))]
        unknown = [name for name in out_features if name not in stage_names]
        if unknown:
            raise ValueError(f"MODEL.SWIN.OUT_FEATURES has {unknown}; this Swin has stages {stage_names}")
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm)
        if ape:
            grid = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, grid, grid))
            trunc_normal_(self.absolute_pos_embed, std=0.02)
        else:
            self.absolute_pos_embed = None
        self.pos_drop = nn.Dropout(drop_rate)

        drop_path = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.num_features = [embed_dim * 2**i for i in range(len(depths))]
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.layers.append(SwinStage(
                self.num_features[i], depth, num_heads[i], window_size, mlp_ratio, qkv_bias, qk_scale, drop_rate,
                attn_drop_rate, drop_path[start:start + depth], downsample=i < len(depths) - 1,
                use_checkpoint=use_checkpoint,
            ))
        self._out_features = [name for name in stage_names if name in out_features]
        for name in self._out_features:
            self.add_module(f"norm{stage_names.index(name)}", nn.LayerNorm(self.num_features[stage_names.index(name)]))
        self._out_feature_strides = {name: patch_size * 2**i for i, name in enumerate(stage_names)}
        self._out_feature_channels = dict(zip(stage_names, self.num_features))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec | None = None):
        swin = cfg.MODEL.SWIN
        return {
            "pretrain_img_size": swin.PRETRAIN_IMG_SIZE,
            "patch_size": swin.PATCH_SIZE,
            "in_chans": input_shape.channels if input_shape is not None else len(cfg.MODEL.PIXEL_MEAN),
            "embed_dim": swin.EMBED_DIM,
            "depths": tuple(swin.DEPTHS),
            "num_heads": tuple(swin.NUM_HEADS),
            "window_size": swin.WINDOW_SIZE,
            "mlp_ratio": swin.MLP_RATIO,
            "qkv_bias": swin.QKV_BIAS,
            "qk_scale": swin.QK_SCALE,
            "drop_rate": swin.DROP_RATE,
            "attn_drop_rate": swin.ATTN_DROP_RATE,
            "drop_path_rate": swin.DROP_PATH_RATE,
            "ape": swin.APE,
            "patch_norm": swin.PATCH_NORM,
            "out_features": tuple(swin.OUT_FEATURES),
            "use_checkpoint": swin.USE_CHECKPOINT,
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: B×3×H×W normalised image -> {name: B×C×H/s×W/s} for the configured `res*` outputs."""
        if x.dim() != 4:
            raise ValueError(f"D2SwinTransformer expects a B×C×H×W tensor, got shape {tuple(x.shape)}")
        x = self.patch_embed(x)
        if self.absolute_pos_embed is not None:
            pos = F.interpolate(self.absolute_pos_embed, size=x.shape[1:3], mode="bicubic")
            x = x + pos.permute(0, 2, 3, 1)
        x = self.pos_drop(x)
        outputs = {}
        for i, stage in enumerate(self.layers):
            stage_out, x = stage(x)
            name = f"res{i + 2}"
            if name in self._out_features:
                outputs[name] = getattr(self, f"norm{i}")(stage_out).permute(0, 3, 1, 2).contiguous()
        return outputs

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }

    @property
    def size_divisibility(self) -> int:
        return 32
