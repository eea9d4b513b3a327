"""A seeded, resumable sampler and a DataLoader that can save and restore where it is.

The order of epoch ``e`` is a pure function of ``(seed, e)``, so the loader's whole state is
``(epoch, number of samples consumed in that epoch)``: saving it after any step and loading it into a fresh
loader yields exactly the batches an uninterrupted run would have seen next. The consumed count is taken
from the batches handed to the caller, not from the sampler, so DataLoader workers prefetching ahead does
not skew it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from verl.data.config import DataConfig

__all__ = ["ResumableSampler", "StatefulDataLoader", "create_rl_sampler"]


class ResumableSampler(Sampler[int]):
    """Indices of ``range(num_samples)``: a fresh seeded permutation per epoch (or in order), from a start position.

    Args:
        num_samples: dataset length (or a sized dataset).
        shuffle: permute each epoch; the permutation of epoch ``e`` depends only on ``(seed, e)``.
        seed: shuffling seed.

    State (:meth:`state_dict`): ``epoch``, ``position`` (samples of this epoch already consumed), ``seed``.
    """

    def __init__(self, num_samples: int | Sized, shuffle: bool = True, seed: int = 0):
        self.num_samples = num_samples if isinstance(num_samples, int) else len(num_samples)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.position = 0

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of ``epoch`` (int64, ``[num_samples]``)."""
        if not self.shuffle:
            return np.arange(self.num_samples, dtype=np.int64)
        rng = np.random.default_rng([self.seed, epoch])  # independent stream per (seed, epoch)
        return rng.permutation(self.num_samples).astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        yield from self.order(self.epoch)[self.position :].tolist()

    def __len__(self) -> int:
        return self.num_samples - self.position

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(
                f"sampler state was saved with seed {state['seed']} but this sampler has seed {self.seed}; "
                "resume with the same data.seed"
            )
        if not 0 <= state["position"] <= self.num_samples:
            raise ValueError(f"sampler position {state['position']} is outside this dataset of {self.num_samples}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


class StatefulDataLoader:
    """A ``torch.utils.data.DataLoader`` over a :class:`ResumableSampler` with ``state_dict``/``load_state_dict``.

    Each ``iter()`` runs the rest of the current epoch and then advances to the next one; breaking out of a
    loop leaves the state at the last batch handed out, so the next ``iter()`` (or a loader restored from
    :meth:`state_dict`) continues right after it.

    Args:
        dataset: a map-style dataset.
        batch_size: samples per batch.
        sampler: a :class:`ResumableSampler` (default: shuffled, seed 0).
        collate_fn, num_workers, drop_last, kwargs: as for ``torch.utils.data.DataLoader``.
    """

    def __init__(self, dataset: Dataset, batch_size: int, sampler: ResumableSampler | None = None,
                 collate_fn: Callable[[list], Any] | None = None, num_workers: int = 0, drop_last: bool = True,
                 **kwargs: Any):  # fmt: skip
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.sampler = sampler or ResumableSampler(len(dataset))  # type: ignore[arg-type]
        self.collate_fn = collate_fn
        self.num_workers = num_workers
        self.drop_last = drop_last
        self.kwargs = kwargs

    def __len__(self) -> int:
        """Batches in a full epoch."""
        n = self.sampler.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,  # starts at sampler.position; the iterator snapshots it now
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            drop_last=self.drop_last,
            **self.kwargs,
        )
        remaining = self.sampler.num_samples - self.sampler.position
        n_batches = remaining // self.batch_size if self.drop_last else -(-remaining // self.batch_size)
        if n_batches == 0:  # nothing left in this epoch (e.g. resumed right before its dropped tail)
            self._next_epoch()
            return
        for k, batch in enumerate(loader):
            # the state must already say "next epoch" when the epoch's last batch is handed out, so a run
            # saved right after it resumes at the next epoch instead of an empty remainder
            if k == n_batches - 1:
                self._next_epoch()
            else:
                self.sampler.position += self.batch_size
            yield batch

    def _next_epoch(self) -> None:
        self.sampler.epoch += 1
        self.sampler.position = 0

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)


def create_rl_sampler(data_config: Any, dataset: Sized) -> ResumableSampler:
    """The training sampler of ``data.shuffle`` / ``data.seed``."""
    cfg = DataConfig.from_any(data_config)
    return ResumableSampler(len(dataset), shuffle=cfg.shuffle, seed=cfg.seed)
