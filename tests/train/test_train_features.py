"""Training people can leave running: checkpoints on signals and on time, TensorBoard, EMA, schedules."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dpedkit.config import TrainConfig
from dpedkit.errors import ConfigError
from dpedkit.nn.checkpoint import load_checkpoint
from dpedkit.testing import write_synthetic_dataset
from dpedkit.train import TrainingStopped, saved_step, train
from dpedkit.train.schedule import lr_factor

SRCNN = {"channels1": 8, "channels2": 4}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("feat") / "ds", n_train=32, n_test=4, patch=24, seed=1)


def _cfg(**kw) -> TrainConfig:
    base = dict(model="srcnn", iters=12, batch=2, eval_every=100, model_config=SRCNN, device="cpu",
                data_mode="memory", samples=1, save_every="0")  # fmt: skip
    return TrainConfig(**(base | kw))


def _weights(path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    return {**ckpt["state_dict"], **{f"ema.{k}": v for k, v in ckpt.get("ema", {}).items()}}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_at_the_step_it_came_and_the_resumed_run_equals_an_uninterrupted_one(data, tmp_path, signum):
    cfg = _cfg(ema=0.9, lr_schedule="cosine", warmup=2)  # every piece of state a resume must restore
    train(data, tmp_path / "clean", config=cfg)
    before = signal.getsignal(signum)
    at = int(np.random.default_rng(int(signum)).integers(2, 11))  # a random step, the same on every run

    def send(step: int, iters: int, losses: dict) -> None:
        if step == at:
            os.kill(os.getpid(), signum)

    with pytest.raises(TrainingStopped) as exc:
        train(data, tmp_path / "stopped", config=cfg, on_progress=send)
    assert exc.value.step == at and saved_step(tmp_path / "stopped") == at  # not the last evaluation (step 0)
    assert exc.value.exit_code == 128 + signum
    assert signal.getsignal(signum) == before  # the handler that was there is back
    train(data, tmp_path / "stopped", config=cfg, resume=True)
    _assert_same(_weights(tmp_path / "clean" / "latest.pt"), _weights(tmp_path / "stopped" / "latest.pt"))


@pytest.mark.slow
def test_sigterm_of_the_command_exits_143_and_prints_the_resume_command(data, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "dpedkit_cli.main", "train", str(data), "-o", str(run), "--model", "srcnn",
           "--iters", "100000", "--batch", "2", "--eval-every", "100000", "--arch", "channels1=8", "--device", "cpu",
           "--save-every", "0"]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "COLUMNS": "400"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() and time.monotonic() < deadline:  # the step-0 row: in the loop
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    text = " ".join((out + err).split())
    assert proc.returncode == 143, text[-2000:]
    step = saved_step(run)
    assert step and step > 0 and f"stopped by SIGTERM: {run} is saved at step {step}" in text
    assert f"-o {run} --resume" in text


def test_latest_pt_is_written_every_save_every_iterations_or_minutes(data, tmp_path):
    seen = []
    train(data, tmp_path / "it", config=_cfg(iters=9, save_every="4"),
          on_progress=lambda s, n, _: seen.append((s, saved_step(tmp_path / "it"))))  # fmt: skip
    assert seen[:9] == [(1, 0), (2, 0), (3, 0), (4, 4), (5, 4), (6, 4), (7, 4), (8, 8), (9, 9)]

    seen.clear()
    train(data, tmp_path / "min", config=_cfg(iters=3, save_every="0.000001m"),
          on_progress=lambda s, n, _: seen.append((s, saved_step(tmp_path / "min"))))  # fmt: skip
    assert seen == [(1, 1), (2, 2), (3, 3)]  # a tiny interval: after every step
    with pytest.raises(ConfigError, match="save_every"):
        _cfg(save_every="ten minutes")
    assert TrainConfig(model="srcnn").save_interval() == (0, 600.0)  # the default: every 10 minutes


# ------------------------------------------------------------------------------------------ TensorBoard, EMA


def test_tensorboard_events_and_ema_weights(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = train(data, run, config=_cfg(iters=20, eval_every=10, ema=0.9))
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"metrics/psnr", "metrics/ema_psnr", "train/lr", "train/iters_per_s", "loss/g_loss"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("metrics/psnr")] == [0, 10, 20]
    assert events.Scalars("metrics/psnr")[-1].value == pytest.approx(result.history[-1]["psnr"], rel=1e-6)
    assert len(tags["images"]) == 1 and len(events.Images(tags["images"][0])) == 3

    latest = load_checkpoint(run / "latest.pt")
    raw, ema = latest["state_dict"], latest["ema"]
    assert raw.keys() == ema.keys() and any(not torch.equal(raw[k], ema[k]) for k in raw)
    assert all(r["ema_psnr"] is not None for r in result.history)  # evaluated beside the raw weights
    best = load_checkpoint(run / "best.pt")
    which = best["weights"]
    assert which in ("raw", "ema")
    scores = [r["ema_psnr" if which == "ema" else "psnr"] for r in result.history]
    assert best["best_psnr"] == pytest.approx(max(max(r["psnr"], r["ema_psnr"]) for r in result.history))
    assert best["best_psnr"] == pytest.approx(max(scores))
    assert _weights(run / "best.pt").keys() == raw.keys()


def test_no_tensorboard_when_turned_off(data, tmp_path):
    train(data, tmp_path / "run", config=_cfg(iters=2, tensorboard=False))
    assert not (tmp_path / "run" / "tensorboard").exists()


# ------------------------------------------------------------------------------------------ schedules


def test_learning_rate_schedules():
    c = _cfg(iters=100, warmup=10)
    assert [lr_factor(s, c) for s in (0, 4, 9, 10, 99)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    step = _cfg(iters=100, lr_schedule="step", lr_step=30, lr_gamma=0.5)
    assert [lr_factor(s, step) for s in (0, 29, 30, 59, 60, 99)] == [1, 1, 0.5, 0.5, 0.25, 0.125]
    cos = _cfg(iters=110, warmup=10, lr_schedule="cosine")
    assert lr_factor(10, cos) == 1.0 and lr_factor(60, cos) == pytest.approx(0.5)
    assert lr_factor(110, cos) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(35, cos) == pytest.approx(0.5 * (1 + math.cos(math.pi * 25 / 100)))


def test_the_schedule_and_clipping_reach_the_optimiser(data, tmp_path, monkeypatch):
    import dpedkit.train.loop as loop

    lrs, norms = [], []
    step = loop.generator_step

    def spy(run, batch):
        lrs.append(run.opt_g.param_groups[0]["lr"])
        out = step(run, batch)
        norms.append(math.sqrt(sum(float(p.grad.pow(2).sum()) for p in run.g.parameters())))
        return out

    monkeypatch.setattr(loop, "generator_step", spy)
    train(data, tmp_path / "run", config=_cfg(iters=6, lr=1e-3, warmup=3, grad_clip=1e-3))
    assert lrs == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3, 1e-3, 1e-3])
    assert max(norms) <= 1e-3 * 1.0001  # the global norm after clipping


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch's own import
def test_compile_trains_the_same_weights(data, tmp_path):
    plain = train(data, tmp_path / "plain", config=_cfg(iters=3))
    compiled = train(data, tmp_path / "compiled", config=_cfg(iters=3, compile=True))
    a, b = _weights(tmp_path / "plain" / "latest.pt"), _weights(tmp_path / "compiled" / "latest.pt")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)  # plain modules saved
    assert compiled.history[-1]["psnr"] == pytest.approx(plain.history[-1]["psnr"], abs=1e-3)
