"""The official CLIP-style text transformer (docs/official_behaviours.md §4.1), parameter names as the official checkpoints.

Keys (under `sem_seg_head.predictor.lang_encoder.lang_encoder.`): `token_embedding.weight`, `positional_embedding`,
`resblocks.{i}.attn.{in_proj_weight,in_proj_bias,out_proj.weight,out_proj.bias}`, `resblocks.{i}.ln_1.*`,
`resblocks.{i}.mlp.c_fc.*`, `resblocks.{i}.mlp.c_proj.*`, `resblocks.{i}.ln_2.*`, `ln_final.*`.

Numerics as the official: pre-LN blocks, QuickGELU, LayerNorm with eps 1e-12 computed in float32, an upper-triangular
causal mask (no padding mask) when `causal`, a key-padding mask from the attention mask otherwise, `ln_final`, and
pooling at the position of the largest token id (the first end-of-text token of CLIP's vocabulary).

Speed (`forward`, all exact): with the causal mask a pooled state depends only on the positions up to it, so nothing
after the end-of-text token is computed; the leading tokens shared by a group of sequences (a prompt template's
words, at least the start token) are encoded once and their keys/values reused by every sequence of the group; the
remaining positions are encoded in chunks of similar length. `hidden_states` is the plain full computation.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from .tokenizer import length_chunks

CLIP_VOCAB_SIZE = 49408
# cuDNN attention builds a kernel plan per new shape (~3 ms of CPU each); prompt batches change shape every step.
_ATTENTION_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


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
            OrderedDict(
                [("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(width * 4, width))]
            )
        )
        self.ln_2 = FP32LayerNorm(width)

    def forward(
        self, x: torch.Tensor, causal_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        h = self.ln_1(x)
        x = (
            x
            + self.attn(
                h,
                h,
                h,
                attn_mask=causal_mask,
                key_padding_mask=key_padding_mask,
                need_weights=False,
                is_causal=causal_mask is not None,
            )[0]
        )
        return x + self.mlp(self.ln_2(x))

    def forward_with_past(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None, attn_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The block on new positions x N×S×width that also attend to earlier positions' keys/values `past`
        (each N×heads×P×d) under the boolean `attn_mask` N×1×S×(P+S) (True = visible; None = causal, no past).

        Returns the new states and the new positions' (keys, values) for later positions.
        """
        qkv = F.linear(self.ln_1(x), self.attn.in_proj_weight, self.attn.in_proj_bias)
        q, k, v = _split_heads(qkv, self.attn.num_heads)
        keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        with sdpa_kernel(_ATTENTION_BACKENDS):
            attended = F.scaled_dot_product_attention(q, keys, values, attn_mask=attn_mask, is_causal=attn_mask is None)
        x = x + self.attn.out_proj(_merge_heads(attended))
        return x + self.mlp(self.ln_2(x)), (k, v)


def _split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """N×T×3W packed projections -> q, k, v, each N×heads×T×(W/heads)."""
    n, t, packed = qkv.shape
    return qkv.view(n, t, 3, heads, packed // (3 * heads)).permute(2, 0, 3, 1, 4).unbind(0)


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
        max_tokens_per_chunk: bound on sequences × positions encoded at once by `forward` (memory).
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
        max_tokens_per_chunk: int = 8192,
    ):
        super().__init__()
        self.max_tokens_per_chunk = max_tokens_per_chunk
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

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        """input_ids N×L, attention_mask N×L, groups N (optional ids: sequences of a group, e.g. one prompt template,
        may share leading tokens) -> N×width, each sequence's final state at its largest token id."""
        if input_ids.shape[1] > self.context_length:
            raise ValueError(
                f"token sequences of length {input_ids.shape[1]} exceed the context length {self.context_length}"
            )
        if not self.causal:
            return self._forward_bidirectional(input_ids, attention_mask)
        ids, device = input_ids.cpu(), input_ids.device
        lengths = ids.argmax(dim=-1) + 1  # up to and including the pooled end-of-text token
        group_of = torch.zeros_like(lengths) if groups is None else torch.unique(groups.cpu(), return_inverse=True)[1]
        prefix_len = _shared_prefix_lengths(ids, lengths, group_of)
        past = self._prefix_keys_values(ids[_first_rows(group_of)], int(prefix_len.max()), device)
        suffix_len = lengths - prefix_len[group_of]
        features, order = [], []
        for rows in length_chunks(suffix_len.tolist(), self.max_tokens_per_chunk):
            rows = torch.tensor(rows)
            rows_past = [(keys[group_of[rows]], values[group_of[rows]]) for keys, values in past]
            features.append(self._encode_suffixes(ids[rows], prefix_len[group_of[rows]], suffix_len[rows], rows_past))
            order.append(rows)
        return torch.cat(features)[torch.argsort(torch.cat(order)).to(device)]

    def _prefix_keys_values(self, first_ids: torch.Tensor, prefix_len: int, device) -> list:
        """Per block, (keys, values) G×heads×P×d of the P leading positions of each group's first sequence."""
        x = self.token_embedding(first_ids[:, :prefix_len].to(device)) + self.positional_embedding[:prefix_len]
        past = []
        for block in self.resblocks:
            x, keys_values = self._run_block(block, x, None, None)
            past.append(keys_values)
        return past

    def _encode_suffixes(self, ids, prefix_len, suffix_len, past) -> torch.Tensor:
        """Final states n×width of n sequences (ids n×L on the CPU), computed from their positions after their shared
        prefix (prefix_len n) up to their pooled token (suffix_len n); `past` holds, per block, the prefix keys and
        values n×heads×P×d (P ≥ every prefix_len)."""
        device = past[0][0].device
        steps = int(suffix_len.max())
        positions = (prefix_len[:, None] + torch.arange(steps)).clamp(max=ids.shape[1] - 1)  # shorter rows: after EOS
        x = self.token_embedding(ids.gather(1, positions).to(device)) + self.positional_embedding[positions.to(device)]
        past_visible = torch.arange(past[0][0].shape[2])[None, None, :] < prefix_len[:, None, None]
        own_visible = torch.ones(steps, steps, dtype=torch.bool).tril_()
        mask = torch.cat([past_visible.expand(-1, steps, -1), own_visible.expand(len(ids), -1, -1)], dim=2)
        mask = mask[:, None].to(device)
        for block, keys_values in zip(self.resblocks, past):
            x, _ = self._run_block(block, x, keys_values, mask)
        return self.ln_final(x[torch.arange(len(ids), device=device), (suffix_len - 1).to(device)])

    def _run_block(self, block, x, past, mask):
        if self.activation_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(block.forward_with_past, x, past, mask, use_reentrant=False)
        return block.forward_with_past(x, past, mask)

    def _forward_bidirectional(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Without the causal mask: chunks of similar attended length, each cut to its longest (padding keys are
        masked, so cutting them is exact)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        pool_index = input_ids.argmax(dim=-1)
        lengths = torch.maximum(attention_mask.sum(dim=-1), pool_index + 1).tolist()
        features, order = [], []
        for rows in length_chunks(lengths, self.max_tokens_per_chunk):
            keep = lengths[rows[0]]
            rows = torch.tensor(rows, device=input_ids.device)
            hidden = self.hidden_states(input_ids[rows, :keep], attention_mask[rows, :keep])
            features.append(hidden[torch.arange(len(rows), device=hidden.device), pool_index[rows]])
            order.append(rows)
        return torch.cat(features)[torch.argsort(torch.cat(order))]


def _first_rows(group_of: torch.Tensor) -> torch.Tensor:
    """Index of the first row of each group 0..G-1."""
    first = torch.full((int(group_of.max()) + 1,), len(group_of), dtype=torch.long)
    return first.scatter_reduce(0, group_of, torch.arange(len(group_of)), reduce="amin")


def _shared_prefix_lengths(ids: torch.Tensor, lengths: torch.Tensor, group_of: torch.Tensor) -> torch.Tensor:
    """Per group, the number of leading tokens all its sequences share, leaving each sequence ≥ 1 own position."""
    groups = int(group_of.max()) + 1
    first = ids[_first_rows(group_of)]
    agree = (ids == first[group_of]).long().cumprod(dim=1).sum(dim=1)  # per row: leading tokens equal to its first
    shared = torch.full((groups,), ids.shape[1], dtype=torch.long).scatter_reduce(0, group_of, agree, reduce="amin")
    shortest = torch.full((groups,), ids.shape[1], dtype=torch.long).scatter_reduce(0, group_of, lengths, reduce="amin")
    return torch.minimum(shared, shortest - 1)

