"""Everything :func:`dpedkit.train.train` sets up before the loop: processes, data, networks, losses, state.

- :func:`init_distributed`: one process, or DDP from the ``torchrun`` environment (``WORLD_SIZE > 1``): NCCL on
  CUDA, gloo on CPU; rank ``r`` uses ``cuda:LOCAL_RANK``.
- :func:`plan_run_dir`: whether the run folder starts a run, resumes one or is in the way (:data:`RUN_FILES`).
- :func:`setup_run`: builds the :class:`Run` (networks under a forked, seeded RNG so the global RNG is left
  alone; optimisers; the data source; the test split; the resume state from ``latest.pt``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dpedkit import __version__
from dpedkit.dataset.source import identity
from dpedkit.errors import ConfigError, InputError
from dpedkit.io import LOCK_NAME, write_json, write_text
from dpedkit.nn.device import fits_in_memory
from dpedkit.nn.losses import LossWeights
from dpedkit.nn.registry import Recipe, is_raw_model, model_spec, trainable
from dpedkit.train.data import (
    D_STREAM,
    G_STREAM,
    Batch,
    LoaderSource,
    MemorySource,
    read_all,
    shard_indices,
)
from dpedkit.train.resume import (
    RUN_CONFIG,
    TrainConfig,
    arch_conflicts,
    arch_dict,
    read_latest,
    read_run_config,
)
from dpedkit.train.schedule import Ema

if TYPE_CHECKING:
    from dpedkit.dataset.source import Source

log = logging.getLogger(__name__)


@dataclass
class Dist:
    """This process's place in the job: ``rank`` of ``world`` processes, its ``device``."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        """True under DDP (several processes)."""
        return self.world > 1

    def barrier(self) -> None:
        """Wait for every rank (no-op alone)."""
        if self.active:
            cuda = self.device.type == "cuda"  # NCCL wants to know the rank's GPU
            torch.distributed.barrier(device_ids=[self.device.index] if cuda else None)

    def close(self) -> None:
        """Leave the process group (no-op alone)."""
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def init_distributed(device: str) -> Dist:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (NCCL on CUDA, gloo on CPU)."""
    from dpedkit.nn.device import resolve_device

    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(0, 1, dev)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend, rank=rank, world_size=world)
    log.info("rank %d of %d on %s (%s)", rank, world, dev, backend)
    return Dist(rank, world, dev)


@dataclass(kw_only=True)
class Run:
    """State of one training run (networks, optimisers, data) shared by the step functions."""

    config: TrainConfig
    dist: Dist
    run_dir: Path
    g: nn.Module  # the generator as trained (DDP-wrapped under DDP)
    g_raw: nn.Module  # the bare generator module
    d: nn.Module | None  # DDP-wrapped discriminator (None for the baselines)
    d_raw: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    recipe: Recipe
    weights: LossWeights
    vgg: nn.Module | None  # VGG-19 features for the content term (recipes with one)
    source: Any  # MemorySource | LoaderSource
    test: tuple[np.ndarray, np.ndarray] | None
    resolved: dict[str, Any]
    n_train: int
    best_psnr: float | None = None
    seen: np.ndarray | None = None
    ema: Ema | None = None  # moving average of the generator's weights (``config.ema`` > 0)
    baseline: np.ndarray | None = None  # raw2rgb: LibRaw's processing of the test patches, scored for comparison
    baseline_name: str = "identity"  # what ``baseline`` is (the source's ``baseline_name``: libraw, demosaic)
    tb: Any = None  # TensorBoard SummaryWriter (rank 0, ``config.tensorboard``)

    @property
    def device(self) -> torch.device:
        """Where the networks run."""
        return self.dist.device

    @property
    def patches_per_iter(self) -> int:
        """Patch pairs consumed per iteration by all ranks (a G batch, plus a D batch for dped)."""
        return self.config.batch * self.dist.world * (2 if self.d is not None else 1)

    def autocast(self) -> AbstractContextManager:
        """bfloat16 autocast when ``amp``, else nothing."""
        if not self.config.amp:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def mark_seen(self, *batches: Batch | None) -> None:
        """Record which global indices this rank trained on (written to ``ranks.json``)."""
        for b in batches:
            if b is not None:
                self.seen[b.index.numpy()] = True

    def save(self, step: int, *, best: str | None = None) -> None:
        """Write ``best.pt`` when ``best`` names the weights that improved, then ``latest.pt``.

        ``best``: ``"raw"`` or ``"ema"`` (the generator only; its ``weights`` entry says which). ``latest.pt``
        holds everything to resume, the EMA weights included.

        ``latest.pt`` comes last, each file atomically: a run stopped anywhere resumes from a step whose
        ``best.pt`` is on disk (a resume replays the steps after it and rewrites ``best.pt`` if they improve it).
        """
        from dpedkit.nn.checkpoint import save_checkpoint

        info = {"step": step, "best_psnr": self.best_psnr, "train_config": self.config.to_dict()}
        state = {"discriminator": self.d_raw.state_dict() if self.d_raw is not None else {},
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict() if self.opt_d else {},
                 "ema": self.ema.module.state_dict() if self.ema is not None else {}}  # fmt: skip
        if best is not None:
            g = self.ema.module if best == "ema" else self.g_raw
            save_checkpoint(self.run_dir / "best.pt", g, extra=info | {"weights": best})
        save_checkpoint(self.run_dir / "latest.pt", self.g_raw, extra=info | state)

    def write_ranks(self) -> None:
        """Gather every rank's seen-index mask; rank 0 writes ``ranks.json`` (counts and overlap)."""
        seen = torch.from_numpy(self.seen.astype(np.uint8)).to(self.device)  # NCCL gathers device tensors only
        masks = [seen]
        if self.dist.active:
            masks = [torch.zeros_like(seen) for _ in range(self.dist.world)]
            torch.distributed.all_gather(masks, seen)
        if self.dist.rank == 0:
            stack = torch.stack(masks).bool().cpu()
            out = {"world": self.dist.world, "n_train": self.n_train,
                   "seen": [int(m.sum()) for m in stack], "overlap": int((stack.sum(0) > 1).sum())}  # fmt: skip
            write_json(self.run_dir / "ranks.json", out, sort_keys=False)


# What a run writes in its folder (atomic writes leave ".NAME.*.tmp*" files only when killed outright).
RUN_FILES = (RUN_CONFIG, "metrics.jsonl", "latest.pt", "best.pt", "samples", "ranks.json", "tensorboard")


def saved_step(run_dir: str | Path) -> int | None:
    """The step of the run's last checkpoint (``run_dir/latest.pt``), or None when it has none yet."""
    path = Path(run_dir) / "latest.pt"
    return int(read_latest(path)["step"]) if path.is_file() else None


def plan_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> tuple[int | None, list[Path]]:
    """``(step to resume from or None for a fresh start, files of an earlier run to delete first)``.

    Raises:
        ConfigError: ``run_dir`` holds files that are not a run's, or a checkpoint and neither resume nor overwrite.
    """
    ours, foreign = _run_entries(run_dir)
    has_checkpoint = (run_dir / "latest.pt").is_file()
    stale = [p for p in ours if p.name != RUN_CONFIG]  # replaced once the new run is set up
    if (run_dir / "best.pt").is_file() and not has_checkpoint and not overwrite:
        # a trained run whose latest.pt was deleted (to save space, say): never restart it silently
        raise ConfigError(
            f"run folder {run_dir} holds a trained model (best.pt) but no latest.pt to resume from; keep it and "
            "choose another folder, or pass --overwrite to start again"
        )
    if resume:
        if has_checkpoint:
            return saved_step(run_dir), []
        log.info("%s has no checkpoint yet (stopped before its first one): starting it from step 0", run_dir)
        return None, stale
    if foreign:
        names = ", ".join(sorted(p.name for p in foreign)[:4])
        raise ConfigError(f"run folder {run_dir} is not empty: it holds files that are not a dpedkit run's ({names}); "
                          "choose a new or empty folder")  # fmt: skip
    if has_checkpoint and not overwrite:
        step = saved_step(run_dir)
        raise ConfigError(f"run folder {run_dir} holds a run saved at step {step}: pass --resume to "
                          "continue it, or --overwrite to delete it and start again")  # fmt: skip
    if ours and not overwrite:
        log.info("%s holds a run stopped before its first checkpoint: starting it again", run_dir)
    return None, stale


def _run_entries(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """The entries of ``run_dir`` a run writes (``RUN_FILES``, their temporary files), and the others."""
    if not run_dir.is_dir():
        return [], []
    ours, foreign = [], []
    for path in run_dir.iterdir():
        if path.name == LOCK_NAME:  # the lock a running train holds: neither stale nor someone else's
            continue
        own = path.name in RUN_FILES or any(path.name.startswith(f".{n}.") and ".tmp" in path.name for n in RUN_FILES)
        if path.name == RUN_CONFIG and read_run_config(run_dir) is None:
            own = False  # someone else's config.json
        (ours if own else foreign).append(path)
    return ours, foreign


def remove_paths(paths: list[Path]) -> None:
    """Delete these files and folders (a link is removed, never followed)."""
    for path in paths:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)


def _seeded(seed: int, fn: Callable[[], nn.Module]) -> nn.Module:
    """Build a module with the global RNG forked and seeded (left unchanged afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def build_networks(
    config: TrainConfig, patch: int, device: torch.device, *, resume: dict[str, Any] | None = None
) -> tuple[nn.Module, nn.Module | None]:
    """The generator and, for ``dped``, the discriminator for ``patch`` px inputs.

    The generator is built, in this order of precedence, with the architecture of the checkpoint ``resume``
    (the run's ``latest.pt``, whose weights the caller loads), from ``config.init`` (architecture and weights),
    or fresh from ``config.model_config``.

    Raises:
        ConfigError: ``init`` holds another model, or an architecture that ``model_config`` contradicts.
        CheckpointError: unreadable ``init``.
    """
    from dpedkit.nn.checkpoint import build_model

    if resume is not None:
        g = build_model(resume["model"], resume["config"])
    elif config.init:
        g = _init_generator(config)
    else:
        g = _seeded(config.seed, lambda: build_model(config.model, config.model_config))
    d = None
    if model_spec(config.model).recipe.discriminator:
        from dpedkit.nn.discriminator import Discriminator, DiscriminatorConfig

        d = _seeded(config.seed + 1, lambda: Discriminator(DiscriminatorConfig(patch=patch))).to(device)
    return g.to(device), d


def _init_generator(config: TrainConfig) -> nn.Module:
    """The generator of ``config.init``; ``model_config`` may only repeat its architecture."""
    from dpedkit.nn.checkpoint import build_model, load_checkpoint, load_state

    ckpt = load_checkpoint(config.init)
    if ckpt["model"] != config.model:
        raise ConfigError(f"init model {config.init} is a {ckpt['model']!r} network, not {config.model!r}")
    conflicts = arch_conflicts(ckpt["model"], ckpt["config"], config.model_config)
    if conflicts:
        arch = arch_dict(ckpt["model"], ckpt["config"])
        detail = ", ".join(f"{k}: init has {arch[k]!r}, given {config.model_config[k]!r}" for k in conflicts)
        raise ConfigError(f"--arch contradicts the architecture of the init model {config.init} "
                          f"({detail}); a run started from a model keeps its architecture")  # fmt: skip
    g = build_model(ckpt["model"], ckpt["config"])
    load_state(g, ckpt["state_dict"], source=config.init)
    return g


def _source(data: Source, config: TrainConfig, dist: Dist, start: int):
    """The training batches of this rank: in device memory when they fit (or asked), else a DataLoader."""
    reader = data.reader("train")  # a dataset's shards are checked by sha256 first: no damaged data trains
    if len(reader) == 0:
        raise InputError(data.path, "the training split holds no patch pairs")
    index = shard_indices(len(reader), dist.rank, dist.world)
    first = reader.raw(0)[0]
    raw = data.is_raw
    if raw != is_raw_model(config.model):
        kind = "a raw2rgb dataset (RAW mosaic patches)" if raw else "an RGB dataset"
        fit = f"a {'RAW' if raw else 'RGB'} model: " + ", ".join(trainable("raw" if raw else "rgb"))
        raise ConfigError(f"{data.path} is {kind}: it trains {fit}; got --model {config.model}")
    p = first.shape[0]
    nbytes = 2 * len(index) * p * p * 3
    mode = config.data_mode
    if mode == "auto":
        mode = "memory" if fits_in_memory(nbytes, dist.device) else "loader"
    kw = {"batch": config.batch, "seed": config.seed, "rank": dist.rank, "device": dist.device}
    if mode == "memory":
        phone, dslr = read_all(reader, index, workers=config.workers if len(index) > 4096 else 0)
        src = MemorySource(phone, dslr, index, **kw)
    else:
        streams = (G_STREAM, D_STREAM) if model_spec(config.model).recipe.discriminator else (G_STREAM,)
        src = LoaderSource(reader, index, start=start, stop=config.iters, workers=config.workers, streams=streams, **kw)
    log.info("training data: %d pairs (%d on this rank), %s path, %.2f GB", len(reader), len(index), mode, nbytes / 1e9)
    return src, len(reader), p, mode


def setup_run(
    data: str | Path, run_dir: Path, config: TrainConfig, dist: Dist, *, start: int, resume: bool | None = None
) -> Run:
    """Build the :class:`Run` for ``config`` on this rank.

    Args:
        data: the dataset folder.
        run_dir: the run folder.
        config: the options; ``Run.config`` records the generator architecture actually built (all fields).
        dist: this process's place in the job.
        start: the first step to train.
        resume: restore networks and optimisers from ``run_dir/latest.pt`` (default: ``start > 0``).
    """
    from dpedkit.dataset.source import open_source
    from dpedkit.nn.checkpoint import load_state

    data = Path(data)
    config = config.with_recipe_defaults()
    pairs = open_source(data, phone=config.phone)
    source, n_train, patch, mode = _source(pairs, config, dist, start)
    test = None
    if dist.rank == 0:
        try:
            test = pairs.arrays("test")
        except InputError as exc:
            log.warning("no test split (%s): metrics rows will have no PSNR", exc)
        if test is not None and len(test[0]) == 0:
            log.warning("%s: the test split is empty: metrics rows will have no PSNR and best.pt is not written", data)
            test = None
    baseline = None
    if is_raw_model(config.model):  # the sensor the network reads, from the dataset's RAW files
        config = replace(config, model_config=pairs.sensor() | (config.model_config or {}))
        if test is not None:
            baseline = pairs.baseline("test")
    latest = read_latest(run_dir / "latest.pt") if (start > 0 if resume is None else resume) else None
    g, d = build_networks(config, patch, dist.device, resume=latest)
    config = replace(config, model_config=g.cfg.to_dict())  # what is trained (init or latest.pt may set it)
    recipe = model_spec(config.model).recipe
    vgg = None
    if recipe.vgg:
        from dpedkit.nn.vgg import load_vgg

        vgg = load_vgg(config.vgg, dist.device, seed=config.seed)
    adam = {"lr": config.lr, "betas": (0.9, 0.999), "eps": 1e-8}
    opt_g = torch.optim.Adam(g.parameters(), **adam)
    opt_d = torch.optim.Adam(d.parameters(), **adam) if d is not None else None
    best = _restore(run_dir, latest, g, d, opt_g, opt_d, start, dist) if latest is not None else None
    ema = Ema(g, config.ema) if config.ema > 0 else None
    if ema is not None and latest is not None and latest.get("ema"):
        load_state(ema.module, latest["ema"], source=run_dir / "latest.pt")
    g_w, d_w = g, d
    if dist.active:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        g_w = nn.parallel.DistributedDataParallel(g, device_ids=ids)
        d_w = nn.parallel.DistributedDataParallel(d, device_ids=ids) if d is not None else None
    if config.compile:  # the training steps only: checkpoints and evaluations use the plain modules
        g_w = torch.compile(g_w)
        d_w = torch.compile(d_w) if d_w is not None else None
    weights = LossWeights.preset(config.loss_preset)
    data_info = {
        "path": str(data.resolve()),
        "n_train": n_train,
        "patch": patch,
        "n_test": 0 if test is None else len(test[0]),
        "data_mode": mode,
        **identity(data),
    }
    resolved = {"train": config.to_dict(), "data": data_info, "world_size": dist.world,
                "device": str(dist.device), "dpedkit_version": __version__, "torch_version": torch.__version__,
                "loss_weights": weights.to_dict()}  # fmt: skip
    return Run(config=config, dist=dist, run_dir=run_dir, g=g_w, g_raw=g, d=d_w, d_raw=d, opt_g=opt_g, opt_d=opt_d,
               recipe=recipe, weights=weights, vgg=vgg, source=source, test=test, resolved=resolved,
               n_train=n_train, best_psnr=best, seen=np.zeros(n_train, bool), ema=ema, baseline=baseline,
               baseline_name=pairs.baseline_name())  # fmt: skip


def _restore(run_dir: Path, ckpt: dict[str, Any], g, d, opt_g, opt_d, start: int, dist: Dist) -> float | None:
    """Load the ``latest.pt`` dict ``ckpt`` into the networks and optimisers; drop metrics rows past ``start``."""
    from dpedkit.nn.checkpoint import load_state

    load_state(g, ckpt["state_dict"], source=run_dir / "latest.pt")
    if d is not None:
        load_state(d, ckpt["discriminator"], source=run_dir / "latest.pt")
        opt_d.load_state_dict(ckpt["opt_d"])
    opt_g.load_state_dict(ckpt["opt_g"])
    if dist.rank == 0:
        _truncate_metrics(run_dir / "metrics.jsonl", start)
    log.info("resumed %s at step %d", run_dir, start)
    best = ckpt.get("best_psnr")
    return best if best is not None and math.isfinite(best) else None  # runs saved before NaN PSNRs were skipped


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the rows of ``metrics.jsonl`` up to ``step`` (a line cut short by a kill is dropped too)."""
    if not path.is_file():
        return
    rows = []
    for line in filter(str.strip, path.read_text().splitlines()):
        try:
            if json.loads(line)["step"] <= step:
                rows.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            log.warning("%s: dropped a damaged row %r", path, line[:80])
    write_text(path, "".join(rows))
