"""The official CLIP-style text transformer (spec §4.1), parameter names as the official checkpoints.

Keys (under `sem_seg_head.predictor.lang_encoder.lang_encoder.`): `token_embedding.weight`, `positional_embedding`,
`resblocks.{i}.attn.{in_proj_weight,in_proj_bias,out_proj.weight,out_proj.bias}`, `resblocks.{i}.ln_1.*`,
`resblocks.{i}.mlp.c_fc.*`, `resblocks.{i}.mlp.c_proj.*`, `resblocks.{i}.ln_2.*`, `ln_final.*`.

Numerics as the official: pre-LN blocks, QuickGELU, LayerNorm with eps 1e-12 computed in float32, an upper-triangular
causal mask (no padding mask) when `causal`, a key-padding mask from the attention mask otherwise, `ln_final`, and
pooling at the position of the largest token id (the first end-of-text token of CLIP's vocabulary).

Speed: the pooled output of a sequence only depends on the positions up to its pooling position (causal) or up to
its last attended token (non-causal), so `forward` cuts the batch to its longest such prefix: exact, and short class
prompts cost ~15 positions instead of 77.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

CLIP_VOCAB_SIZE = 49408


class FP32LayerNorm(nn.Module):
    """LayerNorm over the last dimension computed in float32, eps inside the square root (official "TF style")."""

    def __init__(self, width: int, eps: float = 1e-12):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.layer_norm(x.float(), self.weight.shape, self.weight.float(), self.bias.float(), self.eps)
        return out.to(x.dtype)


class QuickGELU(nn.Module):
    """x·σ(1.702x), CLIP's GELU approximation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: x + MHA(LN(x)), then x + MLP(LN(x)); x is N×T×width."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = FP32LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict([("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(width * 4, width))])
        )
        self.ln_2 = FP32LayerNorm(width)

    def forward(
        self, x: torch.Tensor, causal_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(
            h, h, h, attn_mask=causal_mask, key_padding_mask=key_padding_mask,
            need_weights=False, is_causal=causal_mask is not None,
        )[0]
        return x + self.mlp(self.ln_2(x))

    def forward_shared_prefix(self, prefix: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal block over sequences that all start with the same P tokens, computed once.

        prefix 1×P×width (the common first positions), x N×S×width (each sequence's remaining positions)
        -> (prefix, x) after the block: the same values as the block on the full N×(P+S) sequences.
        """
        heads = self.attn.num_heads
        q_p, k_p, v_p = _split_heads(F.linear(self.ln_1(prefix), self.attn.in_proj_weight, self.attn.in_proj_bias), heads)
        q_x, k_x, v_x = _split_heads(F.linear(self.ln_1(x), self.attn.in_proj_weight, self.attn.in_proj_bias), heads)
        prefix_len, length = prefix.shape[1], x.shape[1]
        visible = torch.ones(length, prefix_len + length, dtype=torch.bool, device=x.device).tril_(prefix_len)
        batch = x.shape[0]
        attended_x = F.scaled_dot_product_attention(
            q_x, torch.cat([k_p.expand(batch, -1, -1, -1), k_x], 2),
            torch.cat([v_p.expand(batch, -1, -1, -1), v_x], 2), attn_mask=visible,
        )
        attended_p = F.scaled_dot_product_attention(q_p, k_p, v_p, is_causal=True)
        prefix = prefix + self.attn.out_proj(_merge_heads(attended_p))
        x = x + self.attn.out_proj(_merge_heads(attended_x))
        return prefix + self.mlp(self.ln_2(prefix)), x + self.mlp(self.ln_2(x))


def _split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """N×T×3W packed projections -> q, k, v, each N×heads×T×(W/heads)."""
    n, t, _ = qkv.shape
    return qkv.view(n, t, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """N×heads×T×d -> N×T×(heads·d)."""
    n, h, t, d = x.shape
    return x.transpose(1, 2).reshape(n, t, h * d)


class ClipTextTransformer(nn.Module):
    """Token ids N×L -> pooled text features N×width (`forward`) or hidden states N×L×width (`hidden_states`).

    Args:
        context_length: number of learned positions (77 or 18 in the official configs).
        width, layers, heads: transformer size (512, 12, 8 official).
        vocab_size: token-embedding rows (CLIP BPE: 49 408).
        causal: upper-triangular attention mask (official `AUTOGRESSIVE`); otherwise padding keys are masked.
        activation_checkpoint: recompute each block in backward (saves memory when training with text gradients).
    """

    def __init__(
        self,
        *,
        context_length: int,
        width: int,
        layers: int,
        heads: int,
        vocab_size: int = CLIP_VOCAB_SIZE,
        causal: bool = True,
        activation_checkpoint: bool = False,
    ):
        super().__init__()
        self.context_length = context_length
        self.width = width
        self.causal = causal
        self.activation_checkpoint = activation_checkpoint
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])
        self.ln_final = FP32LayerNorm(width)
        self._init_weights()

    def _init_weights(self) -> None:
        """Official init: truncated normal (std 0.02) for embeddings and linear weights, zero biases; the
        attention input projection keeps PyTorch's default (Xavier-uniform weight, zero bias)."""
        nn.init.trunc_normal_(self.positional_embedding, std=0.02)
        nn.init.trunc_normal_(self.token_embedding.weight, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids N×T (T ≤ context_length), attention_mask N×T (1 = token, 0 = padding; used only when not causal)
        -> N×T×width after `ln_final`."""
        length = input_ids.shape[1]
        if length > self.context_length:
            raise ValueError(f"token sequences of length {length} exceed the context length {self.context_length}")
        x = self.token_embedding(input_ids) + self.positional_embedding[:length]
        causal_mask = key_padding_mask = None
        if self.causal:
            causal_mask = torch.ones(length, length, dtype=torch.bool, device=x.device).triu_(1)
        elif attention_mask is not None:
            key_padding_mask = attention_mask == 0
        for block in self.resblocks:
            if self.activation_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, causal_mask, key_padding_mask, use_reentrant=False)
            else:
                x = block(x, causal_mask, key_padding_mask)
        return self.ln_final(x)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids N×L, attention_mask N×L -> N×width: the hidden state at each sequence's largest token id.

        Exact shortcuts: the batch is cut to the longest prefix that can influence a pooled state, and with the causal
        mask, leading tokens shared by all sequences (a prompt template's words) are encoded once.
        """
        pool_index = input_ids.argmax(dim=-1)
        if self.causal:
            keep = int(pool_index.max()) + 1
        elif attention_mask is not None:
            keep = int(max(attention_mask.sum(dim=-1).max(), pool_index.max() + 1))
        else:
            keep = input_ids.shape[1]
        input_ids = input_ids[:, :keep]
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        shared = self._shared_prefix_length(input_ids, pool_index) if self.causal else 0
        if shared > 1:
            hidden = self._suffix_hidden_states(input_ids, shared)
            return hidden[rows, pool_index - shared]
        mask = attention_mask[:, :keep] if attention_mask is not None else None
        return self.hidden_states(input_ids, mask)[rows, pool_index]

    @staticmethod
    def _shared_prefix_length(input_ids: torch.Tensor, pool_index: torch.Tensor) -> int:
        """Leading positions on which all rows agree, excluding every row's pooling position."""
        if input_ids.shape[0] < 2:
            return 0
        agree = (input_ids == input_ids[:1]).all(dim=0)
        return min(int(agree.long().cumprod(0).sum()), int(pool_index.min()))

    def _suffix_hidden_states(self, input_ids: torch.Tensor, shared: int) -> torch.Tensor:
        """Causal hidden states N×(T-shared)×width of positions ≥ `shared`, the first `shared` encoded once."""
        prefix = self.token_embedding(input_ids[:1, :shared]) + self.positional_embedding[:shared]
        x = self.token_embedding(input_ids[:, shared:]) + self.positional_embedding[shared : input_ids.shape[1]]
        for block in self.resblocks:
            if self.activation_checkpoint and self.training and torch.is_grad_enabled():
                prefix, x = checkpoint(block.forward_shared_prefix, prefix, x, use_reentrant=False)
            else:
                prefix, x = block.forward_shared_prefix(prefix, x)
        return self.ln_final(x)

_CHECKPOINT_PREFIXES = (
    "model.sem_seg_head.predictor.lang_encoder.lang_encoder.",
    "sem_seg_head.predictor.lang_encoder.lang_encoder.",
    "lang_encoder.",
    "",
)


def load_language_weights(transformer: ClipTextTransformer, path: str) -> None:
    """Initialise `transformer` from a language-only or full checkpoint (MODEL.TEXT.INIT_WEIGHTS).

    Accepts a state dict (optionally nested under "model") whose transformer keys carry one of the prefixes of a full
    OpenSeeD checkpoint, "lang_encoder." or none. Every transformer tensor must be present with its shape, except that
    a positional embedding of another context length is linearly resampled (as the official loader does).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    own = transformer.state_dict()
    prefix = max(_CHECKPOINT_PREFIXES, key=lambda p: sum(p + k in state for k in own))
    missing = [k for k in own if prefix + k not in state]
    if missing:
        raise KeyError(f"{path}: text-encoder weights missing {len(missing)} tensors, e.g. {missing[:3]}")
    loaded = {}
    for key, target in own.items():
        value = state[prefix + key]
        if key == "positional_embedding" and value.shape[1:] == target.shape[1:] and value.shape != target.shape:
            value = F.interpolate(value.float().t()[None], size=target.shape[0], mode="linear")[0].t()
        if value.shape != target.shape:
            raise ValueError(f"{path}: {prefix + key} has shape {tuple(value.shape)}, expected {tuple(target.shape)}")
        loaded[key] = value
    transformer.load_state_dict(loaded)
