"""Official OpenSeeD checkpoints -> state dicts of our model (docs/official_behaviours.md §12).

Our modules keep the official attribute names, so keys map 1:1. Conversion therefore only
- unwraps the two official layouts: released files (the inner model's state dict, no prefix) and trainer
  checkpoints (`{"model": {...}, "trainer": ..., "iteration": ...}` with `model.` on every key);
- drops documented extras (`DROPPED_KEYS`: criterion buffers; Swin `relative_position_index` when the model
  rebuilds it instead of storing it);
- validates: every model key present, no unexpected key, equal shapes (the text positional embedding fixes the
  text context length: 77 for the decoupled configs, 18 for the released non-decoupled Swin-T), and aliases of one
  shared tensor (the box MLP under 19 names, the decoder norm under 2) holding equal values.
A shape mismatch is refused unless `allow_mismatch`, in which case the key is left to the model's initialisation
and reported.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

TRAINER_PREFIX = "model."
TEXT_POSITIONAL_EMBEDDING = "sem_seg_head.predictor.lang_encoder.lang_encoder.positional_embedding"

# Official keys our model never has, with the reason (always dropped).
DROPPED_KEYS = {
    re.compile(r"^criterion(_\w+)?\.empty_weight$"): "criterion buffer (the loss keeps no state in our model)",
}
# Official deterministic buffers: loaded when the model stores them, dropped when it rebuilds them itself.
REBUILT_BUFFERS = {
    re.compile(r"^backbone\..*\.relative_position_index$"): "Swin relative position index, rebuilt by the model",
}
_LISTED_KEYS = 20


class CheckpointConversionError(ValueError):
    """The checkpoint does not fit the model; `report` says why, key by key."""

    def __init__(self, message: str, report: ConversionReport):
        super().__init__(message)
        self.report = report


@dataclass
class ConversionReport:
    """What the conversion did and found.

    Attributes:
        layout: "plain" (keys without prefix, e.g. a released file) or "trainer" (`model.` prefix stripped).
        converted: number of tensors in the converted state dict.
        dropped: official key -> reason, for documented extras.
        ignored_entries: top-level entries of a trainer checkpoint other than "model" (optimizer, iteration, ...).
        missing: model keys absent from the checkpoint.
        unexpected: checkpoint keys the model does not have.
        shape_mismatches: key -> (checkpoint shape, model shape).
        alias_conflicts: groups of keys that are one tensor in the model but hold different values.
        aliases_checked: number of alias groups verified.
    """

    layout: str = "plain"
    converted: int = 0
    dropped: dict[str, str] = field(default_factory=dict)
    ignored_entries: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    alias_conflicts: list[list[str]] = field(default_factory=list)
    aliases_checked: int = 0

    def problems(self, allow_mismatch: bool = False) -> list[str]:
        """One line per kind of problem that prevents a strict load (shape mismatches only if not allowed)."""
        lines = []
        if self.missing:
            lines.append(f"{len(self.missing)} model keys missing from the checkpoint: {_listing(self.missing)}")
        if self.unexpected:
            lines.append(f"{len(self.unexpected)} unexpected checkpoint keys: {_listing(self.unexpected)}")
        if self.shape_mismatches and not allow_mismatch:
            described = [f"{k} {list(a)} vs model {list(b)}" for k, (a, b) in self.shape_mismatches.items()]
            lines.append(
                f"{len(described)} shape mismatches (checkpoint vs model; --allow-mismatch keeps the model's "
                f"initialisation for them): {_listing(described)}"
            )
            if TEXT_POSITIONAL_EMBEDDING in self.shape_mismatches:
                file_len, model_len = (s[0] for s in self.shape_mismatches[TEXT_POSITIONAL_EMBEDDING])
                lines.append(
                    f"text context length: the checkpoint has {file_len} positions, the config {model_len}; "
                    f"set MODEL.TEXT.CONTEXT_LENGTH {file_len}"
                )
        for group in self.alias_conflicts:
            lines.append(f"keys of one shared tensor hold different values in the checkpoint: {', '.join(group)}")
        return lines

    def summary(self) -> str:
        """Human-readable account for logs."""
        lines = [f"converted {self.converted} tensors from a {self.layout} checkpoint"]
        if self.dropped:
            lines.append(f"dropped {len(self.dropped)} documented extras: {_listing(sorted(self.dropped))}")
        if self.ignored_entries:
            lines.append(f"ignored trainer entries: {', '.join(self.ignored_entries)}")
        if self.shape_mismatches:
            lines.append(f"left at the model's initialisation (shape mismatch): {_listing(list(self.shape_mismatches))}")
        lines.append(f"verified {self.aliases_checked} groups of aliased keys")
        return "\n".join(lines + self.problems(allow_mismatch=True))


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LISTED_KEYS])
    return shown + (f", ... and {len(items) - _LISTED_KEYS} more" if len(items) > _LISTED_KEYS else "")


def unwrap_official_checkpoint(checkpoint: Mapping) -> tuple[dict[str, Tensor], ConversionReport]:
    """The inner-model state dict of a released file or a trainer checkpoint, and a report naming the layout."""
    report = ConversionReport()
    state = checkpoint
    if isinstance(checkpoint.get("model"), Mapping):
        state = checkpoint["model"]
        report.ignored_entries = sorted(k for k in checkpoint if k != "model")
    not_tensors = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise CheckpointConversionError(f"checkpoint entries that are not tensors: {_listing(not_tensors)}", report)
    if state and all(k.startswith(TRAINER_PREFIX) for k in state):
        report.layout = "trainer"
        state = {k[len(TRAINER_PREFIX) :]: v for k, v in state.items()}
    return dict(state), report


def convert_official_state_dict(
    state_dict: Mapping,
    model_state_keys_and_shapes: Mapping[str, Tensor | Sequence[int]],
    *,
    allow_mismatch: bool = False,
    alias_groups: Iterable[Sequence[str]] = (),
) -> tuple[dict[str, Tensor], ConversionReport]:
    """Convert an official checkpoint for a model with the given state-dict keys and shapes.

    Args:
        state_dict: a released file's state dict, or a trainer checkpoint `{"model": {"model.<key>": ...}, ...}`.
        model_state_keys_and_shapes: the model's state-dict keys -> shapes (or tensors, e.g. `model.state_dict()`).
        allow_mismatch: leave shape-mismatched keys out (the caller keeps the model's tensors) instead of failing.
        alias_groups: groups of model keys that are one shared tensor (`shared_tensor_groups(model.state_dict())`).
    Returns:
        (converted state dict: model keys -> checkpoint tensors, report).
    Raises:
        CheckpointConversionError: missing or unexpected keys, refused shape mismatches, or aliases that differ;
            the message names the keys.
    """
    state, report = unwrap_official_checkpoint(state_dict)
    model_shapes = {k: tuple(v.shape if isinstance(v, Tensor) else v) for k, v in model_state_keys_and_shapes.items()}
    converted = {}
    for key, tensor in state.items():
        if key not in model_shapes:
            reason = _drop_reason(key)
            if reason is None:
                report.unexpected.append(key)
            else:
                report.dropped[key] = reason
        elif tuple(tensor.shape) != model_shapes[key]:
            report.shape_mismatches[key] = (tuple(tensor.shape), model_shapes[key])
        else:
            converted[key] = tensor
    report.missing = [k for k in model_shapes if k not in state]
    for group in alias_groups:
        present = [k for k in group if k in converted]
        if len(present) > 1:
            report.aliases_checked += 1
            if not all(torch.equal(converted[present[0]], converted[k]) for k in present[1:]):
                report.alias_conflicts.append(present)
    report.converted = len(converted)
    problems = report.problems(allow_mismatch)
    if problems:
        raise CheckpointConversionError("checkpoint does not fit the model:\n" + "\n".join(problems), report)
    return converted, report


def _drop_reason(key: str) -> str | None:
    for patterns in (DROPPED_KEYS, REBUILT_BUFFERS):
        for pattern, reason in patterns.items():
            if pattern.search(key):
                return reason
    return None


def shared_tensor_groups(state_dict: Mapping[str, Tensor]) -> list[list[str]]:
    """Groups (≥ 2 keys) of state-dict entries that are the same tensor (same memory, offset, shape and strides)."""
    groups = defaultdict(list)
    for key, tensor in state_dict.items():
        identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride())
        groups[identity].append(key)
    return [keys for keys in groups.values() if len(keys) > 1 and state_dict[keys[0]].numel() > 0]


def load_official_weights(model: nn.Module, checkpoint: Mapping, *, allow_mismatch: bool = False) -> ConversionReport:
    """Convert `checkpoint` for `model` and load it with strict=True (mismatched keys keep the model's values)."""
    model_state = model.state_dict()
    converted, report = convert_official_state_dict(
        checkpoint, model_state, allow_mismatch=allow_mismatch, alias_groups=shared_tensor_groups(model_state)
    )
    converted.update({key: model_state[key] for key in report.shape_mismatches})
    model.load_state_dict(converted, strict=True)
    return report
