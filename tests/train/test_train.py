"""Training: config validation, batch order, the DPED recipe on a tiny synthetic set, exact resume, DDP (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from dpedkit.dataset.loader import PatchDataset
from dpedkit.errors import ConfigError
from dpedkit.io import read_rgb
from dpedkit.nn.checkpoint import load_checkpoint, load_model
from dpedkit.testing import write_synthetic_dataset
from dpedkit.train import TrainConfig, train
from dpedkit.train.data import LoaderSource, MemorySource, draw, read_all, shard_indices

TINY = {"channels": 8, "blocks": 1}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """64 train + 8 test synthetic 24x24 pairs (about the smallest the discriminator can tell apart)."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("tiny") / "ds", n_train=64, n_test=8, patch=24, seed=1)


def _cfg(**kw) -> TrainConfig:
    base = dict(iters=6, batch=4, vgg="random", eval_every=3, model_config=TINY, device="cpu", data_mode="memory",
                samples=2)  # fmt: skip
    return TrainConfig(**(base | kw))


# ------------------------------------------------------------------------------------------------ config


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="model must be one of"):
        TrainConfig(model="unet", vgg="random")
    with pytest.raises(ConfigError, match="loss_preset"):
        TrainConfig(loss_preset="fast", vgg="random")
    with pytest.raises(ConfigError, match="batch"):
        TrainConfig(batch=0, vgg="random")
    with pytest.raises(ConfigError, match="unknown TrainConfig"):
        TrainConfig.from_dict({"itters": 3})


def test_content_loss_models_need_vgg_and_say_where_to_get_it():
    for model in ("dped", "johnson"):
        with pytest.raises(ConfigError, match="imagenet-vgg-verydeep-19.mat"):
            TrainConfig(model=model)
    assert TrainConfig(model="srcnn").vgg is None  # no content loss, no VGG needed


def test_config_round_trip():
    cfg = _cfg(lr=1e-3, loss_preset="paper")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ------------------------------------------------------------------------------------------------ batches


def test_batches_depend_only_on_seed_rank_step_stream():
    a = draw(1000, 8, seed=0, rank=0, step=5, stream=0)
    assert all(torch.equal(x, y) for x, y in zip(a, draw(1000, 8, seed=0, rank=0, step=5, stream=0), strict=True))
    for other in ({"step": 6}, {"stream": 1}, {"rank": 1}, {"seed": 1}):
        kw = {"seed": 0, "rank": 0, "step": 5, "stream": 0} | other
        assert not torch.equal(a[0], draw(1000, 8, **kw)[0]), other
    assert set(a[1].tolist()) <= {0.0, 1.0}


def test_rank_shards_partition_the_indices():
    parts = [shard_indices(10, r, 3) for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
    with pytest.raises(ConfigError, match="fewer than"):
        shard_indices(2, 0, 3)


def test_memory_and_loader_paths_give_the_same_batches(tiny_data):
    reader = PatchDataset(tiny_data, "train")
    index = shard_indices(len(reader), 1, 2)
    kw = {"batch": 5, "seed": 3, "rank": 1, "device": "cpu"}
    phone, dslr = read_all(reader, index)
    in_workers = read_all(reader, index, workers=1, chunk=7)
    assert np.array_equal(phone, in_workers[0]) and np.array_equal(dslr, in_workers[1])
    assert np.array_equal(phone[3], reader.raw(int(index[3]))[0])
    mem = MemorySource(phone, dslr, index, **kw)
    loader = LoaderSource(reader, index, start=2, stop=4, workers=1, **kw)
    for step in (2, 3):
        for stream in (0, 1):
            a, b = mem.get(step, stream), loader.get(step, stream)
            assert torch.equal(a.phone, b.phone) and torch.equal(a.dslr, b.dslr) and torch.equal(a.flags, b.flags)
            assert set(a.index.tolist()) <= set(index.tolist())
            assert a.phone.dtype == torch.float32 and a.phone.shape == (5, 3, 24, 24)
    with pytest.raises(RuntimeError, match="out of order"):
        LoaderSource(reader, index, start=0, stop=2, workers=0, **kw).get(1, 0)
    loader.close()


# ------------------------------------------------------------------------------------------------ runs


def test_generator_and_discriminator_steps_lower_their_losses(tiny_data, tmp_path):
    """Repeated steps on one fixed batch lower that batch's loss (the other network held fixed)."""
    from dpedkit.train import discriminator_step, generator_step
    from dpedkit.train.setup import init_distributed, setup_run

    run = setup_run(tiny_data, tmp_path, _cfg(lr=2e-3), init_distributed("cpu"), start=0)
    g_batch, d_batch = run.source.get(0, 0), run.source.get(0, 1)
    g_losses = [float(generator_step(run, g_batch)["g_loss"]) for _ in range(10)]
    for group in run.opt_d.param_groups:
        group["lr"] = 2e-4  # Adam at 2e-3 overshoots on a single batch
    d_losses = [float(discriminator_step(run, d_batch)["d_loss"]) for _ in range(10)]
    assert g_losses[-1] < g_losses[0] - 0.5, g_losses
    assert d_losses[-1] < d_losses[0] - 0.5, d_losses


def test_short_dped_run_writes_the_run(tiny_data, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_data, run, config=_cfg(iters=6, eval_every=3, lr=2e-3))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 3, 6] == [r["step"] for r in result.history]
    for key in ("g_loss", "g_texture", "g_color", "d_loss", "d_acc", "ms_ssim", "iters_per_s", "data_wait"):
        assert np.isfinite(rows[-1][key]), key
    assert 0 <= rows[-1]["d_acc"] <= 1 and 0 <= rows[-1]["data_wait"] < 1
    assert rows[-1]["patches_per_s"] == pytest.approx(rows[-1]["iters_per_s"] * 8)  # G batch + D batch
    assert sorted(p.name for p in (run / "samples").iterdir()) == [f"step-00000{s}.png" for s in "036"]
    grid = read_rgb(run / "samples" / "step-000006.png")  # 2 samples of 24 px under a band naming the columns
    assert grid.shape == (14 + 2 * 24, 3 * 24, 3) and grid[:14].min() < 128 and (grid[:14] == 255).mean() > 0.5
    assert load_model(run / "best.pt").cfg.channels == 8  # self-describing: loads without the run's config
    assert load_checkpoint(run / "latest.pt")["step"] == 6
    assert result.best_psnr == max(r["psnr"] for r in rows)
    resolved = json.loads((run / "config.json").read_text())
    assert resolved["train"]["lr"] == 2e-3 and resolved["data"]["n_train"] == 64 and resolved["data"]["patch"] == 24


def test_run_folder_must_be_new(tiny_data, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty"):
        train(tiny_data, tmp_path / "run", config=_cfg())
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(tiny_data, tmp_path / "run", config=_cfg(), resume=True)


class _Killed(Exception):
    pass


def _states(path):
    ckpt = load_checkpoint(path)
    return ckpt["state_dict"], ckpt["discriminator"], ckpt["opt_g"]["state"], ckpt["opt_d"]["state"]


def _assert_identical(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_identical(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_identical(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("mode", ["memory", "loader"])
def test_kill_and_resume_is_bit_identical(tiny_data, tmp_path, mode):
    cfg = _cfg(iters=6, eval_every=3, data_mode=mode, workers=0)
    train(tiny_data, tmp_path / "clean", config=cfg)

    def kill_at_5(step, iters, losses):
        if step == 5:
            raise _Killed  # dies after the step-3 checkpoint, with steps 4-5 done and lost

    with pytest.raises(_Killed):
        train(tiny_data, tmp_path / "killed", config=cfg, on_progress=kill_at_5)
    assert load_checkpoint(tmp_path / "killed" / "latest.pt")["step"] == 3
    with pytest.raises(ConfigError, match="lr"):
        train(tiny_data, tmp_path / "killed", config=replace(cfg, lr=1e-3), resume=True)
    result = train(tiny_data, tmp_path / "killed", config=cfg, resume=True)
    assert result.step == 6
    _assert_identical(_states(tmp_path / "clean" / "latest.pt"), _states(tmp_path / "killed" / "latest.pt"))
    steps = [json.loads(r)["step"] for r in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 3, 6]


def test_resume_can_extend_a_finished_run(tiny_data, tmp_path):
    train(tiny_data, tmp_path / "a", config=_cfg(iters=6, model="srcnn", vgg=None, model_config=None))
    train(tiny_data, tmp_path / "b", config=_cfg(iters=3, model="srcnn", vgg=None, model_config=None))
    train(tiny_data, tmp_path / "b", config=_cfg(iters=6, model="srcnn", vgg=None, model_config=None), resume=True)
    _assert_identical(load_checkpoint(tmp_path / "a" / "latest.pt")["state_dict"],
                      load_checkpoint(tmp_path / "b" / "latest.pt")["state_dict"])  # fmt: skip


@pytest.mark.slow
def test_two_process_gloo_torchrun_shards_the_data(tiny_data, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
           "dpedkit_cli.main", "train", str(tiny_data), "-o", str(run), "--iters", "4", "--batch", "4",
           "--eval-every", "2", "--vgg", "random", "--arch", "channels=8", "--arch", "blocks=1", "--device", "cpu",
           "--data-mode", "memory"]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = json.loads((run / "ranks.json").read_text())
    assert ranks["world"] == 2 and ranks["overlap"] == 0 and all(s > 0 for s in ranks["seen"])
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    assert load_checkpoint(run / "latest.pt")["step"] == 4
    assert [json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()] == [0, 2, 4]


def test_amp_run_keeps_float32_weights_and_finite_losses(tiny_data, tmp_path):
    result = train(tiny_data, tmp_path / "amp", config=_cfg(iters=2, eval_every=2, amp=True))
    row = result.history[-1]
    assert all(np.isfinite(row[k]) for k in ("g_loss", "d_loss", "psnr"))
    state = load_checkpoint(tmp_path / "amp" / "latest.pt")["state_dict"]
    assert all(v.dtype == torch.float32 for v in state.values())


@pytest.mark.parametrize(
    ("model", "arch", "terms"),
    [
        ("srcnn", {"channels1": 8, "channels2": 4}, {"g_mse"}),
        ("johnson", {"channels": 4, "blocks": 1}, {"g_content", "g_tv"}),
    ],
)
def test_baselines_train_with_their_own_losses(tiny_data, tmp_path, model, arch, terms):
    result = train(tiny_data, tmp_path / model, config=_cfg(model=model, model_config=arch, iters=2, eval_every=2))
    row = result.history[-1]
    assert terms | {"g_loss"} == {k for k in row if k.startswith("g_")} and "d_loss" not in row
    assert row["patches_per_s"] == pytest.approx(4 * row["iters_per_s"])  # one batch per iteration
    assert type(load_model(tmp_path / model / "best.pt")).name == model


def test_short_dped_run_improves_the_generator_loss(tiny_data, tmp_path):
    """40 iterations of the full recipe lower the generator's content + color + TV loss on the test split.

    The adversarial term is left out: it is measured against a discriminator that trains too.
    """
    from dpedkit.dataset.loader import load_split
    from dpedkit.nn.checkpoint import save_checkpoint
    from dpedkit.nn.generator import Generator, GeneratorConfig
    from dpedkit.nn.losses import PRESETS, color_loss, content_loss, tv_loss
    from dpedkit.nn.vgg import load_vgg

    torch.manual_seed(0)
    init = Generator(GeneratorConfig(**TINY))
    save_checkpoint(tmp_path / "init.pt", init, config=init.cfg.to_dict())
    train(tiny_data, tmp_path / "run", config=_cfg(iters=40, eval_every=40, lr=2e-3, init=str(tmp_path / "init.pt")))

    phone, dslr = (torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255 for a in load_split(tiny_data, "test"))
    vgg, w = load_vgg("random"), PRESETS["code"]

    def loss(model: torch.nn.Module) -> float:
        with torch.no_grad():
            out = model(phone)
            return float(
                w.content * content_loss(out, dslr, vgg=vgg) + w.color * color_loss(out, dslr) + w.tv * tv_loss(out)
            )

    before, after = loss(load_model(tmp_path / "init.pt")), loss(load_model(tmp_path / "run" / "latest.pt"))
    assert after < 0.95 * before, (before, after)


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tiny_data, tmp_path):
    """A real `kill -9` of `dpedkit train` after its second checkpoint, then `--resume`, equals a clean run."""
    import signal
    import time

    def cmd(run, *extra):
        return [sys.executable, "-m", "dpedkit_cli.main", "-q", "train", str(tiny_data), "-o", str(run),
                "--iters", "20", "--batch", "4", "--eval-every", "4", "--vgg", "random", "--arch", "channels=8",
                "--arch", "blocks=1", "--device", "cpu", "--data-mode", "memory", *extra]  # fmt: skip

    env = os.environ | {"OMP_NUM_THREADS": "1"}
    subprocess.run(cmd(tmp_path / "clean"), check=True, env=env, capture_output=True, timeout=300)
    proc = subprocess.Popen(cmd(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics, deadline = tmp_path / "killed" / "metrics.jsonl", time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:  # steps 0, 4, 8 written
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    assert load_checkpoint(tmp_path / "killed" / "latest.pt")["step"] < 20
    subprocess.run(cmd(tmp_path / "killed", "--resume"), check=True, env=env, capture_output=True, timeout=300)
    _assert_identical(_states(tmp_path / "clean" / "latest.pt"), _states(tmp_path / "killed" / "latest.pt"))
    steps = [json.loads(r)["step"] for r in metrics.read_text().splitlines()]
    # No duplicated or out-of-order rows; a kill between a checkpoint and its row may lose that one row.
    assert steps == sorted(set(steps)) and set(steps) <= set(range(0, 21, 4)) and {0, 4, 8, 20} <= set(steps)
