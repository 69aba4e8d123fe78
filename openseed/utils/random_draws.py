"""The random draws of a training forward, made through one explicit object (the replay seam).

Every part of the model that draws at training time takes a `TrainingDraws` and names each draw with a key
(prefixed by `scoped`, e.g. with the dataset task):

    "{task}/templates"              prompt template id per class (`LanguageEncoder`)
    "{task}/synonyms"               synonym index per class (`LanguageEncoder`; classes with one name draw nothing)
    "{task}/dn_noise"               uniform box noise of the denoising groups, (groups·N, 4): group-major, the N
                                    ground-truth boxes of the batch image by image (conditioned queries)
    "{task}/match_points/{set}"     uniform points of the matcher's mask costs, (1, P, 2) per image
    "{task}/mask_points/{set}"      point sampling of the mask losses: the oversampled candidates (M, kP, 2),
                                    then the fresh uniform points (M, P', 2)

where {set} is the criterion's suffix of the prediction set ("0", "1".."L", "0_interm", "0_dn".."L_dn").

`TrainingDraws` draws from torch's global generator (or a given CPU generator) exactly as plain `torch.rand` /
`torch.randint` calls would. `RecordedDraws` returns draws recorded elsewhere (the official implementation's, in the
fidelity tests), in the order they were recorded under each key, and reports what was left unused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


class TrainingDraws:
    """Fresh random draws; `generator` (CPU) makes them reproducible without touching the global generator."""

    def __init__(self, generator: torch.Generator | None = None, prefix: str = ""):
        self.generator = generator
        self.prefix = prefix

    def scoped(self, prefix: str) -> TrainingDraws:
        """The same source with keys prefixed by `prefix/`."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.prefix = f"{self.prefix}{prefix}/"
        return view

    def uniform(self, key: str, shape: Sequence[int], device: torch.device | str) -> Tensor:
        """fp32 uniform [0, 1) tensor of `shape` on `device`."""
        if self.generator is None:
            return torch.rand(*shape, device=device)
        return torch.rand(*shape, generator=self.generator).to(device)

    def integers(self, key: str, high: int, count: int) -> list[int]:
        """`count` integers uniform in [0, high), drawn together."""
        return torch.randint(high, (count,), generator=self.generator).tolist()

    def choices(self, key: str, sizes: Sequence[int]) -> list[int]:
        """One index in [0, size) per entry; entries with size 1 draw nothing and get 0."""
        return [int(torch.randint(size, (1,), generator=self.generator)) if size > 1 else 0 for size in sizes]


class RecordedDraws(TrainingDraws):
    """Replays `records` {key: list of recorded draws}; ints for `integers` / `choices`; for `uniform` either the
    tensor itself or {"rng_state": CPU generator state before the draw, "shape", "sum": float64 sum of the values}
    (the values are regenerated from the state and checked against the sum).

    Each call takes the next recorded entries of its key (one draw; `count` or `len(sizes)` ints) and checks that
    they fit the request (shape, range). A key without recorded draws left is an error.
    """

    def __init__(self, records: Mapping[str, Sequence], prefix: str = ""):
        super().__init__(None, prefix)
        self.records = {key: list(values) for key, values in records.items()}
        self.used = {key: 0 for key in self.records}

    def _take(self, key: str, count: int) -> list:
        full = self.prefix + key
        values = self.records.get(full)
        if values is None:
            raise KeyError(f"no recorded draws under {full!r}")
        start = self.used[full]
        if start + count > len(values):
            raise IndexError(f"{full!r}: {count} draws requested, {len(values) - start} recorded draws left")
        self.used[full] = start + count
        return values[start:start + count]

    def uniform(self, key: str, shape: Sequence[int], device: torch.device | str) -> Tensor:
        (value,) = self._take(key, 1)
        if isinstance(value, Mapping):
            value = _regenerate(value, self.prefix + key)
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"{self.prefix + key!r}: recorded draw of shape {tuple(value.shape)}, requested {tuple(shape)}")
        return value.to(device=device, dtype=torch.float32)

    def integers(self, key: str, high: int, count: int) -> list[int]:
        values = [int(v) for v in self._take(key, count)]
        if any(not 0 <= v < high for v in values):
            raise ValueError(f"{self.prefix + key!r}: recorded values {values} outside [0, {high})")
        return values

    def choices(self, key: str, sizes: Sequence[int]) -> list[int]:
        values = [int(v) for v in self._take(key, len(sizes))]
        if any(not 0 <= v < size for v, size in zip(values, sizes)):
            raise ValueError(f"{self.prefix + key!r}: recorded choices {values} outside the sizes {list(sizes)}")
        return values

    def unused(self) -> dict[str, int]:
        """{key: number of recorded draws never requested} for keys with draws left."""
        return {key: len(values) - self.used[key] for key, values in self.records.items()
                if self.used[key] < len(values)}


def _regenerate(record: Mapping, key: str) -> Tensor:
    """The uniform draw of a {"rng_state", "shape", "sum"} record."""
    generator = torch.Generator()
    generator.set_state(record["rng_state"])
    value = torch.rand(*record["shape"], generator=generator)
    total = float(value.double().sum())
    if abs(total - float(record["sum"])) > 1e-9 * max(1.0, abs(total)):
        raise ValueError(f"{key!r}: values regenerated from the recorded generator state sum to {total}, "
                         f"recorded {float(record['sum'])}")
    return value
