"""Training data for :mod:`dpedkit.train`: where the patch pairs come from and how batches are drawn.

Batches are drawn with replacement, as the original DPED trainer does. The batch of step ``s`` is a pure
function of ``(seed, rank, s, stream)`` (``stream`` 0 = generator step, 1 = discriminator step): a run resumed
at any step replays exactly the data order of an uninterrupted run, whichever path serves the batches.

Two paths, same batches:

- :class:`MemorySource`: the uint8 patches of the split are loaded once into device memory (a DPED-size set is
  ~10 GB and fits an H100); each batch is gathered on the device and converted to float there.
- :class:`LoaderSource`: a ``DataLoader`` with worker processes reads the batches (each worker opens its own
  shard handles), pinned uint8 batches go to the device, and float conversion happens there.

Under DDP, rank ``r`` of ``W`` owns the indices ``r, r + W, r + 2W, ...`` of the split (its shard of the indices)
and samples only from them, so ranks never see the same patch pair.

Convention: a batch is ``(phone, dslr)``, each ``N x 3 x P x P`` float32 in [0, 1], RGB, on the device.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from dpedkit.errors import ConfigError, InputError
from dpedkit.nn.device import check_memory, to_float_chw

log = logging.getLogger(__name__)

G_STREAM, D_STREAM = 0, 1


class PairReader(Protocol):
    """Random access to the uint8 patch pairs of one split (``raw(i) -> (phone, dslr)``, ``P x P x 3`` RGB)."""

    def __len__(self) -> int: ...

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``(phone, dslr)`` patches of row ``index``."""
        ...


def step_generator(seed: int, rank: int, step: int, stream: int) -> torch.Generator:
    """The CPU ``torch.Generator`` that draws the batch of ``(seed, rank, step, stream)`` (independent streams)."""
    state = np.random.SeedSequence([seed, rank, step, stream]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def draw(n: int, batch: int, *, seed: int, rank: int, step: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (``batch`` int64 in ``[0, n)``, with replacement) and real/fake swap flags (``batch`` 0/1 float).

    The flags are the discriminator's per-sample ``adv`` values (1 = show the DSLR patch); the generator step
    ignores them.
    """
    g = step_generator(seed, rank, step, stream)
    pos = torch.randint(n, (batch,), generator=g)
    flags = torch.randint(2, (batch,), generator=g).float()
    return pos, flags


def shard_indices(n: int, rank: int, world: int) -> np.ndarray:
    """Global indices owned by ``rank`` of ``world``: ``rank, rank + world, ...`` (int64)."""
    if n < world:
        raise ConfigError(f"the training split has {n} patch pairs, fewer than the {world} processes")
    return np.arange(rank, n, world, dtype=np.int64)


@dataclass
class Batch:
    """One training batch on the device: ``phone``/``dslr`` N x 3 x P x P float [0, 1], swap ``flags`` (N,)."""

    phone: torch.Tensor
    dslr: torch.Tensor
    flags: torch.Tensor
    index: torch.Tensor  # global indices of the pairs (host int64), for bookkeeping


class MemorySource:
    """Batches gathered from uint8 tensors held in device memory (this rank's shard of the indices only).

    Args:
        phone, dslr: ``M x P x P x 3`` uint8 arrays of the rank's shard (global indices ``index``).
        index: global index of each row (int64, length M).
        batch, seed, rank: sampling parameters (see :func:`draw`).
        device: where the tensors live and batches are produced.
    """

    def __init__(
        self, phone: np.ndarray, dslr: np.ndarray, index: np.ndarray, *, batch: int, seed: int, rank: int, device
    ) -> None:
        self.phone = torch.as_tensor(phone).to(device)
        self.dslr = torch.as_tensor(dslr).to(device)
        self.index = torch.as_tensor(index)
        self.batch, self.seed, self.rank, self.device = batch, seed, rank, torch.device(device)

    def get(self, step: int, stream: int) -> Batch:
        """The batch of ``(step, stream)``."""
        pos, flags = draw(len(self.index), self.batch, seed=self.seed, rank=self.rank, step=step, stream=stream)
        dev = pos.to(self.device, non_blocking=True)
        return Batch(
            to_float_chw(self.phone[dev]), to_float_chw(self.dslr[dev]), flags.to(self.device), self.index[pos].clone()
        )

    def close(self) -> None:
        """Release nothing (the tensors go with the object)."""


class _BatchReader(torch.utils.data.Dataset):
    """Map ``(step, stream)`` to the stacked uint8 batch; runs in DataLoader workers."""

    def __init__(self, reader: PairReader, index: np.ndarray, *, batch: int, seed: int, rank: int) -> None:
        self.reader, self.index = reader, index
        self.batch, self.seed, self.rank = batch, seed, rank

    def __len__(self) -> int:  # pragma: no cover - only the sampler drives it
        return 0

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        step, stream = key
        pos, flags = draw(len(self.index), self.batch, seed=self.seed, rank=self.rank, step=step, stream=stream)
        glob = self.index[pos.numpy()]
        pairs = [self.reader.raw(int(i)) for i in glob]
        phone = np.stack([p for p, _ in pairs])
        dslr = np.stack([d for _, d in pairs])
        return phone, dslr, flags.numpy(), glob


class LoaderSource:
    """Batches read by a ``DataLoader`` with ``workers`` processes, in step order from ``start`` to ``stop``.

    ``get`` must be called in order ``(start, 0), (start, 1), (start + 1, 0), ...`` (what the training loop does);
    the loader prefetches ahead of it.
    """

    def __init__(
        self,
        reader: PairReader,
        index: np.ndarray,
        *,
        batch: int,
        seed: int,
        rank: int,
        device,
        start: int,
        stop: int,
        workers: int,
        streams: Sequence[int] = (G_STREAM, D_STREAM),
    ) -> None:
        self.device = torch.device(device)
        keys = [(s, k) for s in range(start, stop) for k in streams]
        ds = _BatchReader(reader, index, batch=batch, seed=seed, rank=rank)
        self.loader = torch.utils.data.DataLoader(
            ds,
            sampler=keys,
            batch_size=None,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None,
            persistent_workers=False,
            multiprocessing_context="spawn" if workers else None,
        )
        self._keys = iter(keys)
        self._it: Iterator | None = None

    def get(self, step: int, stream: int) -> Batch:
        """The batch of ``(step, stream)``; raises if called out of order."""
        if self._it is None:
            self._it = iter(self.loader)
        key = next(self._keys)
        if key != (step, stream):
            raise RuntimeError(f"LoaderSource.get({step}, {stream}) called out of order (expected {key})")
        phone, dslr, flags, glob = next(self._it)
        nb = self.device.type == "cuda"
        return Batch(
            to_float_chw(phone, self.device, non_blocking=nb),
            to_float_chw(dslr, self.device, non_blocking=nb),
            flags.to(self.device),
            torch.as_tensor(glob),
        )

    def close(self) -> None:
        """Stop the worker processes."""
        self._it = None


def _as_is(item: object) -> object:
    """DataLoader collate that keeps numpy arrays as they are (module level: picklable for spawn)."""
    return item


class _ChunkReader(torch.utils.data.Dataset):
    """Chunk ``k`` of ``index`` read as two stacked uint8 arrays (runs in DataLoader workers)."""

    def __init__(self, reader: PairReader, index: np.ndarray, chunk: int) -> None:
        self.reader, self.index, self.chunk = reader, index, chunk

    def __len__(self) -> int:
        return -(-len(self.index) // self.chunk)

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.reader.raw(int(i)) for i in self.index[k * self.chunk : (k + 1) * self.chunk]]
        return np.stack([p for p, _ in pairs]), np.stack([d for _, d in pairs])


def read_all(reader: PairReader, index: np.ndarray, *, workers: int = 0, chunk: int = 512) -> tuple[np.ndarray, ...]:
    """Read the pairs ``index`` of ``reader`` into two ``M x P x P x 3`` uint8 arrays.

    With ``workers > 0`` the chunks are read (e.g. JPEG-decoded) by that many processes.
    """
    if len(index) == 0:
        raise InputError(None, "no patch pairs to read")
    first = reader.raw(int(index[0]))[0]
    check_memory(4 * len(index) * first.nbytes, torch.device("cpu"), what=f"{len(index)} patch pairs")
    second = reader.raw(int(index[0]))[1]
    phone = np.empty((len(index), *first.shape), first.dtype)
    dslr = np.empty((len(index), *second.shape), second.dtype)  # raw2rgb: a 1-channel phone, a 3-channel DSLR
    chunks = torch.utils.data.DataLoader(
        _ChunkReader(reader, index, chunk),
        batch_size=None,
        num_workers=workers,
        multiprocessing_context="spawn" if workers else None,
        collate_fn=_as_is,
    )
    for k, (p, d) in enumerate(chunks):
        phone[k * chunk : k * chunk + len(p)], dslr[k * chunk : k * chunk + len(d)] = p, d
    return phone, dslr
