"""Joint training loader (docs/official_behaviours.md §8, §0.1): every iteration yields one mini-batch from every training dataset.

`build_joint_train_loader(cfg, start_iter=0)` returns a `JointLoader`; iterating it yields
`{dataset_name: list[dict]}` with `images_per_gpu` mapped samples of each training dataset, mapped by its `mapper`
(the records of `train_specs.train_dataset_specs(cfg)`: DATASETS.TRAIN[i] with DATALOADER.TRAIN_IMS_PER_GPU[i] and
DATASETS.TRAIN_MAPPERS[i]). Each dataset has its own `DataLoader` with
`DATALOADER.NUM_WORKERS` worker processes.

Determinism and exact resume. Everything a batch contains is a function of (seed, rank, batch number):
- indices: an infinite stream whose epoch e is a permutation seeded by (seed, dataset slot, e); rank r of W takes
  positions r, r + W, r + 2W, ... of it (as Detectron2's `TrainingSampler`), so ranks see different images; batch b
  of a rank is its stream positions [b·B, (b+1)·B);
- augmentation: NumPy's and Python's global RNGs are seeded per sample from (seed, slot, rank, position, attempt)
  around the mapper call (and restored afterwards), so results do not depend on the number of workers;
- bad samples (the mapper returns None, see `mappers.robust`) are replaced by an index drawn from the same seed.
Replay (`DATASETS.TRAIN_RATIOS`, e.g. pre-training sets mixed into a fine-tuning): a dataset with ratio r ≤ 1 takes
part in iteration i iff ⌊r·(i+1)⌋ > ⌊r·i⌋ (`takes_part`), i.e. in a fraction r of the iterations, evenly spread;
before iteration k it has contributed ⌊r·k⌋ batches, which is where its stream starts on resume.
The seed is `cfg.SEED` (a seed shared by all ranks is drawn when it is negative: then runs are not repeatable).
To resume after `k` finished iterations call `build_joint_train_loader(cfg, start_iter=k)`: its first batch is the
batch k of an uninterrupted run, bit for bit; there is no sampler state to save besides the iteration number.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
from collections.abc import Callable, Iterator

import numpy as np
import torch.utils.data as torchdata
from detectron2.data import DatasetCatalog
from detectron2.data.common import DatasetFromList
from detectron2.utils import comm

from .mappers import SkipBadSamples, build_mapper
from .train_specs import train_dataset_specs

logger = logging.getLogger(__name__)
MAX_CONSECUTIVE_BAD_SAMPLES = 100


class TrainIndexStream:
    """Infinite, deterministic stream of dataset indices for one rank (see the module docstring)."""

    def __init__(self, size: int, *, seed: int, slot: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True):
        if size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.size, self.seed, self.slot = size, seed, slot
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self._epoch, self._permutation = -1, np.arange(size)

    def index_at(self, position: int) -> int:
        """Dataset index at `position` of this rank's stream."""
        global_position = position * self.world_size + self.rank
        epoch, offset = divmod(global_position, self.size)
        if self.shuffle and epoch != self._epoch:
            self._permutation = np.random.default_rng([self.seed, self.slot, epoch]).permutation(self.size)
            self._epoch = epoch
        return int(self._permutation[offset])


@contextlib.contextmanager
def seeded_global_rngs(seed_words: list[int]):
    """Seed NumPy's and Python's global RNGs (used by Detectron2 augmentations) and restore them afterwards."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    state = np.random.SeedSequence(seed_words).generate_state(2)
    np.random.seed(int(state[0]))
    random.seed(int(state[1]))
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


class MappedBatchStream(torchdata.IterableDataset):
    """Infinite stream of mapped batches (lists of `batch_size` dicts) of one dataset, starting at `start_batch`.

    With several DataLoader workers, worker w produces batches start_batch + w, + w + n, ... and the DataLoader
    returns them in order, so the stream is the same for any number of workers.
    """

    def __init__(self, dataset: DatasetFromList, mapper: Callable[[dict], dict | None], stream: TrainIndexStream, *,
                 batch_size: int, start_batch: int = 0):
        self.dataset, self.mapper, self.stream = dataset, mapper, stream
        self.batch_size, self.start_batch = batch_size, start_batch

    def __iter__(self) -> Iterator[list[dict]]:
        info = torchdata.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        batch = self.start_batch + worker
        while True:
            yield [self.sample(batch * self.batch_size + k) for k in range(self.batch_size)]
            batch += num_workers

    def sample(self, position: int) -> dict:
        """The mapped sample at `position` of this rank's stream (bad samples replaced deterministically)."""
        index = self.stream.index_at(position)
        base = [self.stream.seed, self.stream.slot, self.stream.rank, position]
        for attempt in range(MAX_CONSECUTIVE_BAD_SAMPLES):
            with seeded_global_rngs(base + [attempt]):
                mapped = self.mapper(self.dataset[index])
            if mapped is not None:
                return mapped
            index = int(np.random.default_rng(base + [attempt, 1]).integers(len(self.dataset)))
        raise RuntimeError(f"{MAX_CONSECUTIVE_BAD_SAMPLES} consecutive bad samples at stream position {position}; "
                           "see the warnings above for the files and problems")


def _no_collate(batch: list[dict]) -> list[dict]:
    return batch


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM / SIGUSR1: a preempted job signals every process, and the training
    process stops them itself after writing its checkpoint (openseed.engine.preemption)."""
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)



def takes_part(ratio: float, iteration: int) -> bool:
    """Whether a dataset sampled in a fraction `ratio` (0 < ratio ≤ 1) of the iterations has a batch in `iteration`."""
    return math.floor(ratio * (iteration + 1)) > math.floor(ratio * iteration)


def batches_before(ratio: float, iteration: int) -> int:
    """Batches a dataset of ratio `ratio` contributed to iterations 0 .. `iteration` - 1 (= Σ takes_part)."""
    return math.floor(ratio * iteration)


class JointLoader:
    """Zips one infinite loader per dataset: each step yields `{dataset_name: list[dict]}` with the datasets that
    take part in that iteration (all of them at ratio 1)."""

    def __init__(self, loaders: dict[str, torchdata.DataLoader], batch_sizes: dict[str, int],
                 ratios: dict[str, float] | None = None, start_iter: int = 0):
        self.loaders, self.batch_sizes = loaders, batch_sizes
        self.ratios = {name: 1.0 for name in loaders} if ratios is None else ratios
        self.start_iter = start_iter

    @property
    def dataset_names(self) -> tuple[str, ...]:
        return tuple(self.loaders)

    def __iter__(self) -> Iterator[dict[str, list[dict]]]:
        iterators = {name: iter(loader) for name, loader in self.loaders.items()}
        iteration = self.start_iter
        while True:
            yield {name: next(iterator) for name, iterator in iterators.items()
                   if takes_part(self.ratios[name], iteration)}
            iteration += 1


def _has_annotations(record: dict) -> bool:
    items = record.get("segments_info", record.get("annotations", []))
    return any(not item.get("iscrowd", 0) for item in items)


def train_dataset_dicts(name: str, filter_empty: bool) -> list[dict]:
    """A registered dataset's dicts, without images lacking non-crowd annotations when `filter_empty`."""
    records = DatasetCatalog.get(name)
    if filter_empty:
        kept = [r for r in records if _has_annotations(r)]
        logger.info("dataset %r: removed %d images without annotations", name, len(records) - len(kept))
        records = kept
    if not records:
        raise ValueError(f"training dataset {name!r} has no images")
    return records


def training_seed(cfg) -> int:
    """`cfg.SEED`, or (when negative) a random seed shared by all ranks."""
    return int(cfg.SEED) if cfg.SEED >= 0 else int(comm.shared_random_seed())


def build_joint_train_loader(cfg, start_iter: int = 0) -> JointLoader:
    """One loader per training dataset (`train_dataset_specs(cfg)`), zipped (see the module docstring); `start_iter`
    resumes exactly."""
    specs = train_dataset_specs(cfg)
    seed, rank, world_size = training_seed(cfg), comm.get_rank(), comm.get_world_size()
    loaders, batch_sizes = {}, {}
    for spec in specs:
        name = spec.name
        records = train_dataset_dicts(name, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
        mapper = SkipBadSamples(build_mapper(spec.mapper, cfg, is_train=True, dataset_name=name), is_train=True,
                                dataset_name=name)
        stream = TrainIndexStream(len(records), seed=seed, slot=spec.slot, rank=rank, world_size=world_size)
        dataset = MappedBatchStream(DatasetFromList(records, copy=False, serialize=True), mapper, stream,
                                    batch_size=spec.images_per_gpu,
                                    start_batch=batches_before(spec.ratio, start_iter))
        loaders[name] = torchdata.DataLoader(dataset, batch_size=None, num_workers=cfg.DATALOADER.NUM_WORKERS,
                                             collate_fn=_no_collate, worker_init_fn=ignore_stop_signals)
        batch_sizes[name] = spec.images_per_gpu
        logger.info("training dataset %r: %d images, mapper %r, %d images per GPU in %g of the iterations", name,
                    len(records), spec.mapper, spec.images_per_gpu, spec.ratio)
    return JointLoader(loaders, batch_sizes, {spec.name: spec.ratio for spec in specs}, start_iter)
