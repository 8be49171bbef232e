"""``dpedkit demo``: the whole pipeline on synthetic pairs, offline, in a few minutes on a laptop CPU.

:func:`run_demo` makes synthetic phone/DSLR pairs from the photos bundled with scikit-image
(:mod:`dpedkit.synth.pairs`), builds a dataset (:mod:`dpedkit.dataset.build`), writes the inspect report
(:mod:`dpedkit.inspect.report`), trains a tiny model for a short while (:mod:`dpedkit.train`), evaluates it against the
identity baseline (:mod:`dpedkit.evaluate`) and enhances one held-out phone photo (:mod:`dpedkit.enhance`).
Every stage is the library twin of a command, so ``OUT/demo.json`` lists the equivalent command lines.

Two choices make a few hundred CPU iterations meaningful: the phone photos get one consistent camera look
(:data:`PHONE_LOOK`, :func:`apply_look`) for the network to learn, and the tiny SRCNN starts at the identity
(:func:`identity_srcnn`, as every fresh SRCNN does: :func:`dpedkit.nn.baselines.start_at_identity`), so training
begins at the identity baseline instead of from ~6 dB.

Output folder ``OUT``: ``raw/`` (pairs + truth), ``dataset/``, ``report.html``, ``run/`` (checkpoints,
metrics, samples), ``enhanced/NAME.png`` and ``demo.json`` (paths, scores, seconds per stage).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dpedkit.config import SPLITS, DemoConfig
from dpedkit.errors import ConfigError
from dpedkit.io import dumps, read_rgb, to_uint8, write_image, write_text

log = logging.getLogger(__name__)

STAGES = ("synth", "build", "report", "train", "evaluate", "enhance")
# A small SRCNN (5-1-3 kernels, 32/16 channels, ~3.4k weights): ~10x cheaper per patch than the paper's 9-1-5
# 64/32. Started at the identity (see identity_srcnn) it only has to learn the camera difference.
TINY_SRCNN = {"channels1": 32, "channels2": 16, "kernels": [5, 1, 3]}
# The demo's phone "camera": one consistent look on top of synth's per-shot variation (synth draws a new tone
# curve and colour cast for every pair, which no network can learn to undo; a real phone has one ISP).
PHONE_LOOK = {"gamma": 1.4, "gains": [1.12, 1.0, 0.82], "saturation": 0.8}
_OWN = ("raw", "dataset", "report.html", "run-init", "run", "enhanced", "demo.json")  # what an overwrite may remove


@dataclass
class DemoResult:
    """Where every result of the demo is, and how it went.

    Attributes:
        out_dir: the output folder.
        paths: ``raw``, ``dataset``, ``report``, ``run``, ``model`` (best checkpoint), ``enhanced`` (the photo),
            ``phone`` (its original), ``summary`` (``demo.json``).
        patches: kept patch pairs per split.
        scores: test-split scores ``{"model": {...}, "identity": {...}}`` (DPED-protocol PSNR, MS-SSIM, ...).
        seconds: wall seconds per stage.
        commands: the equivalent command lines, stage by stage.
    """

    out_dir: Path
    paths: dict[str, Path] = field(default_factory=dict)
    patches: dict[str, int] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the content of ``demo.json``)."""
        out = asdict(self)
        out["out_dir"] = str(self.out_dir)
        out["paths"] = {k: str(v) for k, v in self.paths.items()}
        return out


def run_demo(
    out_dir: str | Path,
    *,
    config: DemoConfig = DemoConfig(),
    overwrite: bool = False,
    on_stage: Callable[[str, int, int], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> DemoResult:
    """Run synth -> build -> report -> train -> evaluate -> enhance into ``out_dir``.

    Args:
        out_dir: output folder; it must hold no earlier demo unless ``overwrite``.
        config: the options (:class:`DemoConfig`).
        overwrite: remove an earlier demo's outputs in ``out_dir`` first (only the demo's own files).
        on_stage: called ``(stage, index, total)`` as each stage starts (stages in :data:`STAGES`).
        on_step: called ``(step, iters)`` after every training iteration (the longest stage).

    Returns:
        A :class:`DemoResult`; the same content is written to ``OUT/demo.json``.

    Raises:
        ConfigError: ``out_dir`` holds an earlier demo and ``overwrite`` is false; invalid options.
    """
    out = Path(out_dir)
    _prepare(out, overwrite)
    res = DemoResult(out)
    p = res.paths
    p.update(raw=out / "raw", dataset=out / "dataset", report=out / "report.html", run=out / "run")
    steps: list[tuple[str, Callable[[], None]]] = [
        ("synth", lambda: _synth(res, config)),
        ("build", lambda: _build(res, config)),
        ("report", lambda: _report(res)),
        ("train", lambda: _train(res, config, on_step)),
        ("evaluate", lambda: _evaluate(res, config)),
        ("enhance", lambda: _enhance(res, config)),
    ]
    for i, (stage, fn) in enumerate(steps):
        if on_stage:
            on_stage(stage, i, len(steps))
        t0 = time.perf_counter()
        fn()
        res.seconds[stage] = round(time.perf_counter() - t0, 2)
        log.info("demo: %s done in %.1f s", stage, res.seconds[stage])
    p["summary"] = out / "demo.json"
    write_text(p["summary"], dumps(res.to_dict(), indent=1, sort_keys=False) + "\n")
    return res


def _prepare(out: Path, overwrite: bool) -> None:
    present = [name for name in _OWN if (out / name).exists()]
    if present and not overwrite:
        raise ConfigError(f"{out} already holds a demo ({', '.join(present)}): pass --overwrite")
    for name in present:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _synth(res: DemoResult, cfg: DemoConfig) -> None:
    from dpedkit.io import list_images
    from dpedkit.synth.pairs import synthesize

    synthesize(res.paths["raw"], n=cfg.pairs, seed=cfg.seed, phone_mp=cfg.phone_mp, dslr_mp=cfg.dslr_mp)
    for path in list_images(res.paths["raw"] / "phone"):
        _apply_look(path, PHONE_LOOK)
    res.commands["synth"] = (
        f"dpedkit synth {res.paths['raw']} --n {cfg.pairs} --seed {cfg.seed} --phone-mp {cfg.phone_mp} "
        f"--dslr-mp {cfg.dslr_mp}  # no command gives the demo's phone look: dpedkit.demo.apply_look(PHONE_LOOK)"
    )


def apply_look(rgb: np.ndarray, look: dict[str, Any]) -> np.ndarray:
    """A pointwise camera look: saturation around the luma, colour gains, then a gamma on [0, 1].

    Args:
        rgb: ``H x W x 3`` uint8 RGB.
        look: ``{"gamma": g, "gains": [r, g, b], "saturation": s}``.

    Returns:
        ``H x W x 3`` uint8 RGB (geometry untouched, so the synthetic truth still holds).
    """
    x = rgb.astype(np.float32) / 255.0
    luma = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = luma[..., None] + look["saturation"] * (x - luma[..., None])
    x = np.clip(x * np.asarray(look["gains"], np.float32), 0.0, 1.0) ** look["gamma"]
    return to_uint8(x)


def _apply_look(path: Path, look: dict[str, Any]) -> None:
    write_image(path, apply_look(read_rgb(path), look), quality=92)


def _build(res: DemoResult, cfg: DemoConfig) -> None:
    from dpedkit.config import BuildConfig
    from dpedkit.dataset.build import build_dataset

    raw, ds = res.paths["raw"], res.paths["dataset"]
    summary = build_dataset(
        raw / "phone", raw / "dslr", ds, config=BuildConfig(test_images=cfg.held_out, seed=cfg.seed), jobs=cfg.jobs
    )
    res.patches = dict(summary.patches)
    if not all(res.patches.get(s, 0) for s in SPLITS):
        raise ConfigError(f"the demo dataset has an empty split ({res.patches}); try more pairs or megapixels")
    res.commands["build"] = (
        f"dpedkit build {raw / 'phone'} {raw / 'dslr'} -o {ds} --test-images {cfg.held_out} --jobs {cfg.jobs}"
    )


def _report(res: DemoResult) -> None:
    from dpedkit.config import ReportConfig
    from dpedkit.inspect.report import write_report

    write_report(res.paths["dataset"], res.paths["report"], config=ReportConfig(pair_views=4, hist_pairs=6))
    res.commands["report"] = f"dpedkit inspect {res.paths['dataset']} -o {res.paths['report']}"


def identity_srcnn(arch: dict[str, Any], path: str | Path, *, seed: int = 0, noise: float = 0.03) -> Path:
    """Write an SRCNN checkpoint whose output equals its input, plus a little seeded noise in the other weights.

    Every fresh SRCNN starts this way by default (:func:`dpedkit.nn.baselines.start_at_identity`, with
    ``noise`` 0.03): this writes one with another ``noise`` (0: exactly the identity) or for ``--init``.

    Args:
        arch: SRCNN architecture options (``channels1``/``channels2`` >= 3).
        path: checkpoint to write.
        seed: seed of the random part.
        noise: scale of the random part.

    Returns:
        ``path``.
    """
    import torch

    from dpedkit.nn.baselines import start_at_identity
    from dpedkit.nn.checkpoint import build_model, save_checkpoint

    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's global RNG
        torch.manual_seed(seed)
        net = build_model("srcnn", {**arch, "identity_start": False})
    start_at_identity(net, noise=noise)
    return save_checkpoint(path, net, config={**net.cfg.to_dict(), "identity_start": True})


def _train(res: DemoResult, cfg: DemoConfig, on_step: Callable[[int, int], None] | None = None) -> None:
    from dpedkit.nn.registry import model_spec
    from dpedkit.train import TrainConfig, train

    vgg = "random" if model_spec(cfg.model).recipe.vgg else None  # no VGG weights offline: content loss is a smoke test
    arch = cfg.model_config if cfg.model_config is not None else TINY_SRCNN if cfg.model == "srcnn" else None
    init = None
    if cfg.model == "srcnn":
        init = identity_srcnn(arch or {}, res.out_dir / "run-init" / "identity-srcnn.pt", seed=cfg.seed)
        res.paths["init"] = init  # the identity start the training begins from
    tc = TrainConfig(
        model=cfg.model, iters=cfg.iters, batch=cfg.batch, lr=cfg.lr, eval_every=max(1, cfg.iters // 6),
        device=cfg.device, seed=cfg.seed, vgg=vgg, model_config=arch, init=str(init) if init else None,
    )  # fmt: skip
    progress = (lambda step, iters, _losses: on_step(step, iters)) if on_step else None
    train(res.paths["dataset"], res.paths["run"], config=tc, on_progress=progress)
    res.paths["model"] = res.paths["run"] / "best.pt"
    res.commands["train"] = (
        f"dpedkit train {res.paths['dataset']} -o {res.paths['run']} --model {cfg.model} --iters {cfg.iters} "
        f"--batch {cfg.batch} --lr {cfg.lr} --eval-every {tc.eval_every}"
        + (" --vgg random" if vgg else "")
        + (f" --init {init}" if init else "")
    )


def _evaluate(res: DemoResult, cfg: DemoConfig) -> None:
    from dpedkit.config import EvalConfig
    from dpedkit.evaluate import evaluate

    ev = evaluate(res.paths["model"], res.paths["dataset"], config=EvalConfig(device=cfg.device))
    res.scores = {"n_pairs": ev.n_pairs, "model": asdict(ev.model), "identity": asdict(ev.identity)}
    res.commands["evaluate"] = f"dpedkit evaluate {res.paths['model']} {res.paths['dataset']}"


def _enhance(res: DemoResult, cfg: DemoConfig) -> None:
    from dpedkit.config import EnhanceConfig
    from dpedkit.dataset.format import DatasetDir
    from dpedkit.enhance import enhance

    test = [r for r in DatasetDir(res.paths["dataset"]).pairs() if r.get("split") == "test"]
    phone = Path(test[0]["phone"])  # a photo the model never saw in training
    out = enhance(res.paths["model"], [phone], res.out_dir / "enhanced", config=EnhanceConfig(device=cfg.device))
    res.paths["phone"], res.paths["enhanced"] = phone, Path(out.images[0].output)
    res.commands["enhance"] = f"dpedkit enhance {res.paths['model']} {phone} -o {res.out_dir / 'enhanced'}"
