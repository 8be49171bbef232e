"""``dpedkit train``: the DPED recipe (and the SRCNN / Johnson baselines) as small functions returning metric dicts.

One iteration of the DPED recipe (``model="dped"``): a generator step on one random batch (content + texture +
color + TV loss, the discriminator sees only enhanced images), then a discriminator step on a *different*
random batch with random per-sample real/fake swaps; two Adam optimisers. Baselines (``srcnn``: MSE,
``johnson``: VGG content + TV) only have the generator step. Every ``eval_every`` iterations the generator is
scored on the test split with the DPED protocol (:func:`dpedkit.evaluate.evaluate_arrays`), a row is appended
to ``metrics.jsonl``, a sample grid (phone | enhanced | DSLR) is saved and the checkpoints are written.

Run folder: ``config.json`` (resolved options, written once data and networks are set up), ``metrics.jsonl``,
``latest.pt`` (generator + everything needed to resume), ``best.pt`` (best test PSNR), ``samples/step-NNNNNN.png``,
``ranks.json`` (which data each rank saw). Both checkpoints load anywhere a model is taken (``dpedkit evaluate
RUN/best.pt``). Metrics rows (``metrics.jsonl``, :attr:`TrainResult.history`, ``on_eval``) are strict JSON: a
value that is not finite (NaN or inf, e.g. the MS-SSIM of patches too small for its five scales) is ``null``.

Each evaluation appends its row, then writes ``best.pt`` (when improved), then ``latest.pt``, each atomically:
a run stopped at any point (Ctrl-C, kill) resumes from ``latest.pt``, drops the rows past it and replays the
rest. A run stopped before its first ``latest.pt`` holds nothing to resume and is started again. Between
evaluations ``latest.pt`` is also written every ``save_every`` (iterations or minutes; default 10 minutes), and
SIGINT (Ctrl-C) or SIGTERM (a cluster's preemption) write it at the step reached, then raise
:class:`TrainingStopped` (the command exits 130 or 143 and prints the resume command).

With ``ema`` the moving average of the generator is evaluated beside the raw weights (``ema_psnr``...) and
``best.pt`` holds whichever scored best (its ``weights`` entry says which). ``tensorboard/`` holds event files
(the losses of every 10th iteration, metrics, learning rate, throughput, sample grids); ``metrics.jsonl`` stays the
machine-readable record.

Resume is exact: the batches of step ``s`` depend only on ``(seed, rank, s)`` (:mod:`dpedkit.train.data`), and
``latest.pt`` holds both networks and both optimiser states, so a resumed run is bit-identical to an
uninterrupted one on CPU (on CUDA, nondeterministic cuDNN kernels may differ in the last bits; there is no
other random state to restore: no dropout, no augmentation).

Several processes: ``torchrun --nproc-per-node G dpedkit train ...`` runs DDP (NCCL on GPUs, gloo on CPU);
each rank samples its own shard of the indices and rank 0 writes the run.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dpedkit.dataset.storage import local_dataset
from dpedkit.errors import ConfigError
from dpedkit.io import check_apart, json_safe, write_image
from dpedkit.nn.device import to_float_chw, to_uint8_hwc
from dpedkit.nn.losses import discriminator_accuracy, discriminator_input, discriminator_loss, generator_loss
from dpedkit.nn.vgg import check_weights
from dpedkit.train.data import D_STREAM, G_STREAM, Batch
from dpedkit.train.resume import TrainConfig, read_latest, record_resumed_config, resolve_resume, write_run_config
from dpedkit.train.schedule import SaveClock, lr_factor, set_lr
from dpedkit.train.setup import Dist, Run, init_distributed, plan_run_dir, remove_paths, setup_run

log = logging.getLogger(__name__)


class TrainingStopped(Exception):
    """SIGINT or SIGTERM stopped the training after ``latest.pt`` was written at ``step``."""

    def __init__(self, step: int, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step} (latest.pt written)")
        self.step, self.signum = step, signum

    @property
    def exit_code(self) -> int:
        """The shell's status for a process ended by the signal: 128 + its number (130 SIGINT, 143 SIGTERM)."""
        return 128 + self.signum


@contextmanager
def stop_on_signals() -> Iterator[list[int]]:
    """Collect SIGINT and SIGTERM in the yielded list instead of acting on them (main thread only).

    A second signal of the same kind acts at once (the handler that was there before is put back after the first).
    """
    got: list[int] = []
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        got.append(signum)
        signal.signal(signum, previous[signum])

    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            previous[s] = signal.signal(s, handler)
    except ValueError:  # not the main thread: signals stay as they are
        pass
    try:
        yield got
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass
class TrainResult:
    """What :func:`train` returns: the run folder, the last step, one metrics dict per evaluation.

    ``iters`` is the iterations the run was asked for; ``already_finished``: a resume found the run saved at
    ``step >= iters``, so nothing was trained and nothing in the run folder was touched (raise ``iters`` to go on).
    """

    run_dir: str
    step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best_psnr: float | None = None
    iters: int = 0
    already_finished: bool = False


def generator_step(run: Run, batch: Batch) -> dict[str, torch.Tensor]:
    """One optimiser step of the generator on ``batch``; returns the loss terms (0-d tensors, detached).

    The loss is :func:`dpedkit.nn.losses.generator_loss` of the run's recipe; the discriminator's weights are
    frozen meanwhile (the texture term's gradient reaches the generator only).
    """
    run.g.train()
    with frozen(run.d_raw), run.autocast():
        enhanced = run.g(batch.phone)
        terms = generator_loss(enhanced, batch.dslr, recipe=run.recipe, weights=run.weights, vgg=run.vgg,
                               discriminator=run.d_raw)  # fmt: skip
    loss = terms.pop("total")
    run.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    if run.config.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.g.parameters(), run.config.grad_clip)
    run.opt_g.step()
    if run.ema is not None:
        run.ema.update(run.g_raw)
    return {"g_loss": loss.detach(), **{f"g_{k}": v.detach() for k, v in terms.items()}}


@contextmanager
def frozen(module: torch.nn.Module | None) -> Iterator[None]:
    """``requires_grad_(False)`` on ``module``'s parameters for the block, their flags restored after."""
    params = [] if module is None else [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def discriminator_step(run: Run, batch: Batch) -> dict[str, torch.Tensor]:
    """One optimiser step of the discriminator on ``batch`` with its random real/fake swaps (``batch.flags``).

    The discriminator input is ``gray(enhanced) * (1 - adv) + gray(dslr) * adv``, target ``[adv, 1 - adv]``
    (class 0 = DSLR/real). Returns the loss and the accuracy on this batch.
    """
    with torch.no_grad(), run.autocast():
        enhanced = run.g_raw(batch.phone)
    with run.autocast():
        probs = run.d(discriminator_input(enhanced, batch.dslr, batch.flags))
        loss = discriminator_loss(probs, batch.flags)
    run.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    if run.config.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.d.parameters(), run.config.grad_clip)
    run.opt_d.step()
    return {"d_loss": loss.detach(), "d_acc": discriminator_accuracy(probs.detach(), batch.flags)}


def validate(run: Run, *, step: int) -> tuple[dict[str, float], np.ndarray | None]:
    """Score the generator (and its EMA) on the test split (DPED and PIRM protocols); save the sample grid.

    Returns:
        ``(metrics, sample grid or None)``: ``psnr``, ``ms_ssim``, ``pirm_psnr`` of the raw weights, ``ema_*``
        of the moving average, ``identity_*`` at step 0.
    """
    if run.test is None:
        return {}, None
    from dpedkit.evaluate import evaluate_arrays
    from dpedkit.inspect.pictures import label_columns
    from dpedkit.io import to_uint8

    g = run.g_raw.eval()
    with run.autocast():
        scores, identity = evaluate_arrays(g, *run.test, batch=run.config.eval_batch, device=run.device,
                                           baseline=run.baseline)  # fmt: skip
    row = {"psnr": scores.dped_psnr, "ms_ssim": scores.dped_ms_ssim, "pirm_psnr": scores.pirm_psnr}
    if run.ema is not None:
        with run.autocast():
            ema = evaluate_arrays(run.ema.module, *run.test, batch=run.config.eval_batch, device=run.device,
                                  baseline=run.baseline)[0]  # fmt: skip
        row |= {"ema_psnr": ema.dped_psnr, "ema_ms_ssim": ema.dped_ms_ssim, "ema_pirm_psnr": ema.pirm_psnr}
    grid = None
    k = min(run.config.samples, len(run.test[0]))
    if k:
        with torch.inference_mode():
            out = to_uint8_hwc(g(to_float_chw(run.test[0][:k], run.device)))
        shown = run.test[0] if run.baseline is None else run.baseline  # raw2rgb: LibRaw's processing of the RAW
        cols = (to_uint8(shown[:k]), out, to_uint8(run.test[1][:k]))  # a 16-bit dataset's too
        grid = np.concatenate([np.concatenate(t, axis=0) for t in cols], axis=1)
        grid = label_columns(grid, ("phone" if run.baseline is None else run.baseline_name, "enhanced", "DSLR"))
        write_image(run.run_dir / "samples" / f"step-{step:06d}.png", grid)
    g.train()
    if step == 0:  # the baseline to beat: the phone patches as they are
        row |= {"identity_psnr": identity.dped_psnr, "identity_ms_ssim": identity.dped_ms_ssim}
    return row, grid


class _Meter:
    """Running sums of per-step loss tensors (kept on the device: no sync per step) and timings.

    A new one starts after each evaluation: a metrics row's losses are their means since the evaluation before.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps, self.data_s, self.t0 = 0, 0.0, time.perf_counter()

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums[k] + v.float() if k in self.sums else v.float()

    def means(self) -> dict[str, float]:
        return {k: float(v) / max(self.steps, 1) for k, v in self.sums.items()}


def train(
    data: str | Path,
    run_dir: str | Path,
    *,
    config: TrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``config.model`` on the patch pairs of ``data``, writing the run to ``run_dir``.

    A run folder holding only what an earlier run wrote before its first checkpoint (``latest.pt``) is started
    again (with a log line): it holds nothing to resume.

    Args:
        data: a dpedkit dataset folder (``dataset.json``; train and test splits) or an official DPED folder
            (``.../dped`` with ``config.phone``, or ``.../dped/<phone>``).
        run_dir: run folder (created; must be new, empty or hold a run without checkpoint unless ``resume``
            or ``overwrite``; files that are not a run's are never deleted).
        config: the options (:class:`TrainConfig`).
        resume: continue the run in ``run_dir`` from ``latest.pt`` up to ``config.iters`` (from step 0 when it has
            no checkpoint yet), on the same ``data``; the options must match the run's ``config.json`` except
            :data:`~dpedkit.train.resume.RESUMABLE_CHANGES` (:func:`~dpedkit.train.resume.resume_config` builds
            such a config from the saved one). A larger ``iters`` trains a finished run further and is recorded in
            ``config.json``; a run already at ``config.iters`` is left as it is (``TrainResult.already_finished``).
        overwrite: delete the files of an earlier run in ``run_dir`` (checkpoints included) and start again.
        on_progress: called ``(step, iters, losses)`` after every iteration. ``losses`` is filled every 10th and
            at every evaluation with the mean of each loss term since the last evaluation (or the resume): what
            the metrics row of the next evaluation records (``g_loss``...), not the last batch's.
        on_eval: called with each metrics row (a dict, as appended to ``metrics.jsonl``).

    Returns:
        A :class:`TrainResult` (on rank 0 the history of this run; other ranks get an empty history).

    Raises:
        ConfigError: invalid options, an ``init`` model whose architecture ``model_config`` contradicts, a run
            folder in the way, or a resume mismatch.
        InputError / ShardError: unreadable data.
        CheckpointError: unreadable ``init`` model or ``latest.pt``; a ``vgg`` file that does not exist (checked
            first, before any data is read) or that holds no VGG-19 weights.
        TrainingStopped: SIGINT or SIGTERM came; ``latest.pt`` was written at the step reached (``exc.step``).
        KeyboardInterrupt: a second Ctrl-C, or one before training started; ``run_dir`` then resumes from its
            last checkpoint (``saved_step``).
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    config = config.with_recipe_defaults()
    if config.needs_vgg:  # a missing weights file fails now, not after the data is loaded and the networks built
        check_weights(config.vgg)
    data = local_dataset(data)  # a dataset at a URL: its local copy (dpedkit.dataset.storage)
    dist = init_distributed(config.device)
    try:
        run_dir = Path(run_dir)
        check_apart(run_dir, [data], what="run folder")
        with _held(run_dir, data, dist):
            return _train(data, run_dir, config, dist, resume, overwrite, on_progress, on_eval)
    finally:
        dist.close()


@contextmanager
def _held(run_dir: Path, data: str | Path, dist: Dist) -> Iterator[None]:
    """The run folder for this run alone (rank 0 holds it), and the dataset for readers (no rebuild under us)."""
    from dpedkit.dataset import source
    from dpedkit.io import folder_lock

    with ExitStack() as stack:
        if dist.rank == 0:  # a second `train` into the same folder is refused, as a second build is
            stack.enter_context(folder_lock(run_dir, "train"))
        stack.enter_context(source.held(data, "train"))  # `build --overwrite` is refused while it trains
        yield


def _train(
    data: str | Path, run_dir: Path, config: TrainConfig, dist: Dist, resume: bool, overwrite: bool,
    on_progress: Callable | None, on_eval: Callable | None,
) -> TrainResult:  # fmt: skip
    """:func:`train` once the folders are held."""
    if resume:
        config = resolve_resume(run_dir, config, data)
    start, stale = plan_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if start is not None and start >= config.iters:  # nothing to train: no data is read, no file is written
        log.debug("%s already finished: saved at step %d, iters %d; nothing to train", run_dir, start, config.iters)
        best = read_latest(run_dir / "latest.pt").get("best_psnr")
        return TrainResult(str(run_dir), start, best_psnr=best, iters=config.iters, already_finished=True)
    dist.barrier()  # every rank has checked the folder before rank 0 writes to it
    if dist.rank == 0:
        remove_paths(stale)
    run = setup_run(data, run_dir, config, dist, start=start or 0, resume=start is not None)
    try:
        with stop_on_signals() as stop:
            return _run(run, start, on_progress, on_eval, stop)
    finally:
        run.source.close()
        if run.tb is not None:
            run.tb.close()


def _run(run: Run, start: int | None, on_progress, on_eval, stop: list[int]) -> TrainResult:
    """The training of a set-up run: from scratch (``start`` None: config.json, step-0 evaluation) or resumed."""
    result = TrainResult(str(run.run_dir), start or 0, best_psnr=run.best_psnr, iters=run.config.iters)
    if run.dist.rank == 0 and run.config.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run drops the events past its checkpoint, as metrics.jsonl drops the rows
        run.tb = SummaryWriter(str(run.run_dir / "tensorboard"), purge_step=start or None)
    if start is None:
        if run.dist.rank == 0:
            write_run_config(run.run_dir, run.resolved)
        result.history += [r for r in [_evaluate(run, step=0, meter=None, on_eval=on_eval)] if r]
    elif run.dist.rank == 0:  # a raised --iters is the run's from now on: a later plain --resume goes on to it
        record_resumed_config(run.run_dir, run.config)
    _loop(run, result, on_progress, on_eval, stop)
    run.write_ranks()
    return result


def _loop(run: Run, result: TrainResult, on_progress, on_eval, stop: list[int]) -> None:
    cfg = run.config
    meter, clock = _Meter(), SaveClock(cfg)
    for step in range(result.step, cfg.iters):
        if stop:  # SIGINT / SIGTERM: save where we are, then stop
            if run.dist.rank == 0:
                run.save(step)
            raise TrainingStopped(step, stop[0])
        set_lr([run.opt_g, run.opt_d], cfg.lr * lr_factor(step, cfg))
        t = time.perf_counter()
        g_batch = run.source.get(step, G_STREAM)
        d_batch = run.source.get(step, D_STREAM) if run.d is not None else None
        meter.data_s += time.perf_counter() - t
        values = generator_step(run, g_batch)
        if d_batch is not None:
            values |= discriminator_step(run, d_batch)
        run.mark_seen(g_batch, d_batch)
        meter.add(values)
        meter.steps += 1
        result.step = step + 1
        evaluating = result.step % cfg.eval_every == 0 or result.step == cfg.iters
        # the progress shows what the metrics row records: the mean since the last evaluation (or resume)
        means = meter.means() if evaluating or result.step % 10 == 0 else {}
        if evaluating:
            row = _evaluate(run, step=result.step, meter=meter, on_eval=on_eval)
            if row:
                result.history.append(row)
            result.best_psnr = run.best_psnr
            meter = _Meter()
            clock.saved()
        elif clock.due(result.step):
            if run.dist.rank == 0:  # the weights are the same on every rank: rank 0 writes, nobody waits
                run.save(result.step)
            clock.saved()
        if result.step % 10 == 0 and run.tb is not None:  # this iteration's losses
            for k, v in values.items():
                run.tb.add_scalar(f"loss/{k}", float(v), result.step)
            run.tb.add_scalar("train/lr", run.opt_g.param_groups[0]["lr"], result.step)
        if on_progress:
            on_progress(result.step, cfg.iters, means)


def _evaluate(run: Run, *, step: int, meter: _Meter | None, on_eval) -> dict[str, Any]:
    """Rank 0: metrics row, checkpoints, samples; all ranks wait for it. Returns the row ({} off rank 0)."""
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    row: dict[str, Any] = {}
    if run.dist.rank == 0:
        row = {"step": step}
        if meter is not None and meter.steps:
            elapsed = time.perf_counter() - meter.t0
            row |= meter.means()
            ips = meter.steps / elapsed
            row |= {
                "iters_per_s": ips,
                "patches_per_s": ips * run.patches_per_iter,
                "data_wait": meter.data_s / elapsed,
            }
        metrics, grid = validate(run, step=step)
        row = json_safe(row | metrics | {"lr": run.config.lr * lr_factor(max(step - 1, 0), run.config)})
        best = _improved(row, run.best_psnr)
        if best is not None:
            run.best_psnr = row["ema_psnr" if best == "ema" else "psnr"]
        with open(run.run_dir / "metrics.jsonl", "a") as f:  # the row first: a resume drops rows past latest.pt
            f.write(json.dumps(row, sort_keys=True, allow_nan=False) + "\n")
        run.save(step, best=best)
        if run.tb is not None:
            _to_tensorboard(run.tb, row, grid, step)
        if on_eval:
            on_eval(row)
        log.info("step %d: %s", step, ", ".join(f"{k} {_fmt(v)}" for k, v in row.items() if k != "step"))
    run.dist.barrier()
    return row


def _improved(row: dict[str, Any], best_psnr: float | None) -> str | None:
    """``"raw"`` or ``"ema"``: the weights whose PSNR in ``row`` (the higher) beats ``best_psnr``; else None."""
    scores = [(row[k], name) for k, name in (("psnr", "raw"), ("ema_psnr", "ema")) if row.get(k) is not None]
    if not scores:
        return None
    psnr, name = max(scores)
    return name if best_psnr is None or psnr > best_psnr else None


def _to_tensorboard(tb: Any, row: dict[str, Any], grid: np.ndarray | None, step: int) -> None:
    """One evaluation row as scalars (``metrics/...``, ``train/...``) and the sample grid as an image."""
    speed = ("iters_per_s", "patches_per_s", "data_wait", "lr")
    for k, v in row.items():
        if k != "step" and isinstance(v, int | float) and not isinstance(v, bool):
            tb.add_scalar(f"train/{k}" if k in speed else f"metrics/{k}", v, step)
    if grid is not None:
        tb.add_image("samples (phone | enhanced | DSLR)", grid, step, dataformats="HWC")
    tb.flush()


def _fmt(value: Any) -> str:
    return "null" if value is None else f"{value:.4g}"
