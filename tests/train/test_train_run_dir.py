"""Run folders of `dpedkit train`: restart before the first checkpoint, --overwrite, resume with the saved options,
--arch against --init, strict-JSON metrics, Ctrl-C (exit 130) and what an interrupted run leaves on disk."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from click.testing import CliRunner
from dpedkit_cli.main import cli

import dpedkit.nn.checkpoint
import dpedkit.train.loop
from dpedkit.errors import ConfigError
from dpedkit.nn.checkpoint import load_checkpoint, load_model, save_checkpoint
from dpedkit.testing import write_synthetic_dataset
from dpedkit.train import TrainConfig, train
from dpedkit.train.resume import resume_config

SRCNN = {"channels1": 8, "channels2": 4}
TINY = {"channels": 8, "blocks": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("rundir") / "ds", n_train=32, n_test=4, patch=24, seed=1)


def _cfg(**kw) -> TrainConfig:
    base = dict(model="srcnn", iters=6, batch=2, eval_every=3, model_config=SRCNN, device="cpu", data_mode="memory",
                samples=1)  # fmt: skip
    return TrainConfig(**(base | kw))


def _steps(run) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _strict(text: str):
    """json.loads that refuses NaN / Infinity (what allow_nan=False writers and other languages require)."""

    def refuse(name):
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _interrupt_first_evaluation(monkeypatch):
    """Ctrl-C during the step-0 evaluation (the review's repro); undone by the returned function."""

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dpedkit.train.loop, "validate", stop)
    return lambda: monkeypatch.undo()


# ------------------------------------------------------------------------------------------------ A: run folder


def test_run_stopped_before_its_first_checkpoint_starts_again(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    undo = _interrupt_first_evaluation(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(data, run, config=_cfg())
    undo()
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "tensorboard"]  # set-up, before any checkpoint
    result = train(data, run, config=_cfg(lr=1e-3))  # the same command (here with another lr) starts it again
    assert result.step == 6 and _steps(run) == [0, 3, 6]
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 1e-3


def test_resume_of_a_run_without_checkpoint_starts_from_step_0(data, tmp_path, monkeypatch, caplog):
    run = tmp_path / "run"
    undo = _interrupt_first_evaluation(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(data, run, config=_cfg())
    undo()
    (run / "samples").mkdir()
    (run / "samples" / "step-000000.png").write_bytes(b"partial")
    with caplog.at_level("INFO", logger="dpedkit.train.setup"):
        result = train(data, run, config=_cfg(), resume=True)
    assert "no checkpoint yet" in caplog.text and "step 0" in caplog.text
    assert result.step == 6 and _steps(run) == [0, 3, 6] and load_checkpoint(run / "latest.pt")["step"] == 6


def test_overwrite_restarts_a_saved_run_and_never_deletes_foreign_files(data, tmp_path):
    run = tmp_path / "run"
    train(data, run, config=_cfg(iters=3))
    with pytest.raises(ConfigError, match=r"saved at step 3.*--resume.*--overwrite"):
        train(data, run, config=_cfg(iters=3))
    result = train(data, run, config=_cfg(iters=3, seed=5), overwrite=True)
    assert result.step == 3 and _steps(run) == [0, 3]
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == 5
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"not empty.*notes\.txt"):
        train(data, run, config=_cfg(iters=3), overwrite=True)
    assert (run / "notes.txt").read_text() == "mine" and (run / "latest.pt").is_file()
    with pytest.raises(ConfigError, match="exclude each other"):
        train(data, run, config=_cfg(iters=3), overwrite=True, resume=True)


def test_a_trained_run_without_latest_pt_is_never_restarted_silently(data, tmp_path):
    run = tmp_path / "run"
    train(data, run, config=_cfg(iters=3))
    (run / "latest.pt").unlink()  # kept best.pt only, to save space
    best = (run / "best.pt").read_bytes()
    for resume in (False, True):
        with pytest.raises(ConfigError, match=r"trained model \(best\.pt\) but no latest\.pt"):
            train(data, run, config=_cfg(iters=3), resume=resume)
    assert (run / "best.pt").read_bytes() == best and _steps(run) == [0, 3]
    assert train(data, run, config=_cfg(iters=3), overwrite=True).step == 3


def test_a_config_json_that_is_not_a_runs_is_foreign(data, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text('{"theme": "dark"}')
    with pytest.raises(ConfigError, match="not empty"):
        train(data, tmp_path / "run", config=_cfg(), overwrite=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(data, tmp_path / "run", config=_cfg(), resume=True)
    assert (tmp_path / "run" / "config.json").read_text() == '{"theme": "dark"}'


# ------------------------------------------------------------------------------------------------ B: resume options


def test_cli_resume_takes_the_options_saved_by_the_run(data, tmp_path):
    run = tmp_path / "run"
    first = ["train", str(data), "-o", str(run), "--model", "srcnn", "--batch", "2", "--lr", "1e-3", "--iters", "2",
             "--eval-every", "2", "--arch", "channels1=8", "--arch", "channels2=4", "--device", "cpu"]  # fmt: skip
    assert CliRunner().invoke(cli, first).exit_code == 0
    base = ["train", str(data), "-o", str(run), "--resume", "--json"]
    res = CliRunner().invoke(cli, [*base, "--iters", "4", "--arch", "channels1=8", "--model", "srcnn"])  # repeats: ok
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["step"] == 4 and _steps(run) == [0, 2, 4]
    assert load_checkpoint(run / "latest.pt")["train_config"]["lr"] == 1e-3  # the saved options, not the defaults
    res = CliRunner().invoke(cli, [*base, "--iters", "6", "--batch", "3", "--arch", "channels1=16"])
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert "--batch: run has 2, given 3" in out and "--arch" in out and "--iters" in out  # names what may change
    other = write_synthetic_dataset(tmp_path / "other", n_train=32, n_test=4, patch=24, seed=2)
    res = CliRunner().invoke(cli, ["train", str(other), "-o", str(run), "--resume", "--iters", "6"])
    assert res.exit_code == 2 and "another dataset" in " ".join(res.output.split())
    assert load_checkpoint(run / "latest.pt")["step"] == 4


def test_resume_follows_a_copied_or_moved_dataset(data, tmp_path, caplog):
    src = tmp_path / "ds"
    shutil.copytree(data, src)
    run = tmp_path / "run"
    train(src, run, config=_cfg(iters=3))
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)  # the same shards elsewhere (a node's local disk, say)
    assert train(copy, run, config=_cfg(iters=6), resume=True).step == 6
    shutil.rmtree(src)  # the run's own path is gone: the new one is taken, with a warning
    with caplog.at_level("WARNING", logger="dpedkit.train.resume"):
        assert train(copy, run, config=_cfg(iters=9), resume=True).step == 9
    assert "is gone" in caplog.text


def test_resume_help_names_the_options_that_may_change():
    out = " ".join(CliRunner().invoke(cli, ["train", "--help"]).output.split())
    assert "config.json" in out
    for flag in ("--iters", "--eval-every", "--device", "--data-mode", "--workers"):
        assert flag in out.split("--resume", 1)[1].split("--overwrite")[0].replace("- ", "-"), flag


def test_resume_config_applies_only_the_changes_a_resume_allows(data, tmp_path):
    run = tmp_path / "run"
    train(data, run, config=_cfg(iters=0, lr=2e-3))
    cfg = resume_config(run, data, {"iters": 9, "workers": 0, "model_config": {"channels2": 4}})
    assert (cfg.iters, cfg.workers, cfg.lr, cfg.model_config["channels1"]) == (9, 0, 2e-3, 8)
    with pytest.raises(ConfigError, match=r"--seed: run has 0, given 1"):
        resume_config(run, data, {"seed": 1})
    with pytest.raises(ConfigError, match="nothing to resume"):
        resume_config(tmp_path / "none", data, {})


def _files(run) -> dict[str, tuple[int, bytes]]:
    """Every file of a run folder: (modification time in ns, bytes)."""
    return {str(p.relative_to(run)): (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}


def test_resuming_a_finished_run_says_so_touches_nothing_and_more_iters_train_it_further(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    args = ["train", str(data), "-o", str(run), "--model", "srcnn", "--batch", "2", "--eval-every", "3",
            "--samples", "1", "--arch", "channels1=8", "--arch", "channels2=4", "--device", "cpu",
            "--data-mode", "memory"]  # fmt: skip
    assert CliRunner().invoke(cli, [*args, "--iters", "3"]).exit_code == 0
    before = _files(run)

    def no_setup(*a, **kw):
        raise AssertionError("a finished run was set up again (data loaded, networks built)")

    monkeypatch.setattr(dpedkit.train.loop, "setup_run", no_setup)
    res = CliRunner().invoke(cli, ["train", str(data), "-o", str(run), "--resume"])
    out = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert f"{run} already finished at step 3 of 3 iterations: nothing was trained" in out
    assert "--resume --iters 6" in out and "next: dpedkit evaluate" in out
    result = train(data, run, config=_cfg(iters=3), resume=True)
    assert (result.already_finished, result.step, result.iters, result.history) == (True, 3, 3, [])
    assert _files(run) == before  # nothing rewritten: not metrics.jsonl, ranks.json, tensorboard/
    monkeypatch.undo()

    res = CliRunner().invoke(cli, ["train", str(data), "-o", str(run), "--resume", "--iters", "6", "--json"])
    assert res.exit_code == 0, res.output
    assert (json.loads(res.stdout)["step"], json.loads(res.stdout)["already_finished"]) == (6, False)
    assert _steps(run) == [0, 3, 6] and load_checkpoint(run / "latest.pt")["step"] == 6
    assert resume_config(run, data, {}).iters == 6  # recorded: a plain --resume (the Ctrl-C hint) goes on to 6
    res = CliRunner().invoke(cli, ["train", str(data), "-o", str(run), "--resume"])
    assert "already finished at step 6 of 6 iterations" in " ".join(res.output.split())


# ------------------------------------------------------------------------------------------------ C: --arch vs --init


def test_arch_contradicting_the_init_model_is_refused(data, tmp_path):
    from dpedkit.nn.generator import Generator, GeneratorConfig

    init = save_checkpoint(tmp_path / "init.pt", Generator(GeneratorConfig(**TINY)))
    dped = dict(model="dped", vgg="random", iters=0, init=str(init))
    with pytest.raises(ConfigError, match=r"channels: init has 8, given 16"):
        train(data, tmp_path / "bad", config=_cfg(**dped, model_config={"channels": 16}))
    for arch in (None, {"channels": 8}):  # no override, or one repeating the init's architecture
        run = tmp_path / f"run-{arch is None}"
        train(data, run, config=_cfg(**dped, model_config=arch))
        recorded = json.loads((run / "config.json").read_text())["train"]["model_config"]
        assert recorded["channels"] == load_model(run / "best.pt").cfg.channels == 8 and recorded["blocks"] == 1


# ------------------------------------------------------------------------------------------------ D: strict JSON


def test_metrics_are_strict_json_with_null_for_values_that_are_not_finite(data, tmp_path, monkeypatch):
    def validate(run, *, step):
        return {"psnr": math.nan if step == 0 else 10.0 + step, "ms_ssim": math.nan, "pirm_psnr": math.inf}, None

    monkeypatch.setattr(dpedkit.train.loop, "validate", validate)
    run = tmp_path / "run"
    args = ["train", str(data), "-o", str(run), "--model", "srcnn", "--batch", "2", "--iters", "3", "--eval-every",
            "3", "--arch", "channels1=8", "--device", "cpu", "--json"]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    out = _strict(res.stdout)
    rows = [_strict(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == out["history"]
    assert rows[0]["psnr"] is None and rows[1]["ms_ssim"] is None and rows[1]["pirm_psnr"] is None
    assert out["best_psnr"] == 13.0 and load_checkpoint(run / "best.pt")["step"] == 3  # a NaN PSNR is never best


# ------------------------------------------------------------------------------------------------ E: interruptions


def test_ctrl_c_exits_130_and_says_how_to_resume(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    args = ["train", str(data), "-o", str(run), "--model", "srcnn", "--batch", "2", "--iters", "6", "--eval-every",
            "3", "--arch", "channels1=8", "--device", "cpu", "--data-mode", "memory"]  # fmt: skip
    calls = []
    step = dpedkit.train.generator_step

    def ctrl_c_at_step_5(run_, batch):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return step(run_, batch)

    monkeypatch.setattr(dpedkit.train.loop, "generator_step", ctrl_c_at_step_5)
    res = CliRunner().invoke(cli, args)
    out = " ".join(res.output.split())
    assert res.exit_code == 130 and "Aborted" not in out
    assert "saved at step 3" in out and f"-o {run} --resume" in out
    monkeypatch.undo()
    res = CliRunner().invoke(cli, ["train", str(data), "-o", str(run), "--resume", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["step"] == 6 and _steps(run) == [0, 3, 6]


def test_ctrl_c_before_the_first_checkpoint_says_to_run_the_command_again(data, tmp_path, monkeypatch):
    args = ["train", str(data), "-o", str(tmp_path / "run"), "--model", "srcnn", "--batch", "2", "--iters", "3",
            "--eval-every", "3", "--arch", "channels1=8", "--device", "cpu"]  # fmt: skip
    undo = _interrupt_first_evaluation(monkeypatch)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 130 and "run the same command again" in " ".join(res.output.split())
    undo()
    assert CliRunner().invoke(cli, args).exit_code == 0


def test_interrupt_while_writing_best_pt_leaves_a_consistent_run(data, tmp_path, monkeypatch):
    """Stopped between the checkpoints of the last evaluation: the resumed run has every row and a best.pt that
    matches its best PSNR (latest.pt is written last, the row first)."""
    monkeypatch.setattr(
        dpedkit.train.loop, "validate", lambda run, *, step: ({"psnr": 10.0 + step}, None)
    )  # improves each time
    save, fired = dpedkit.nn.checkpoint.save_checkpoint, []

    def stop_at_last_best(path, model, **kw):
        if path.name == "best.pt" and kw["extra"]["step"] == 6 and not fired:
            fired.append(1)
            raise KeyboardInterrupt
        return save(path, model, **kw)

    monkeypatch.setattr(dpedkit.nn.checkpoint, "save_checkpoint", stop_at_last_best)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(data, run, config=_cfg())
    assert load_checkpoint(run / "latest.pt")["step"] == 3
    result = train(data, run, config=_cfg(), resume=True)
    best = load_checkpoint(run / "best.pt")
    assert _steps(run) == [0, 3, 6] and (best["step"], best["best_psnr"], result.best_psnr) == (6, 16.0, 16.0)


def test_a_metrics_row_cut_short_by_a_kill_is_dropped_on_resume(data, tmp_path):
    run = tmp_path / "run"
    train(data, run, config=_cfg(iters=3))
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "psn')  # a kill in the middle of the next row
    train(data, run, config=_cfg(iters=6), resume=True)
    assert _steps(run) == [0, 3, 6]
