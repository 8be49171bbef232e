"""Command-line options generated from the config dataclasses (dpedkit_cli.options): every field has a flag."""

import json
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner
from dpedkit_cli.main import cli
from dpedkit_cli.options import SEP

from dpedkit.config import SECTIONS, AlignConfig, PatchConfig, nested_class, option_flag

COMMANDS = {c: c for c in ("align", "build", "train", "evaluate", "enhance", "inspect")}
ARGS = {  # positional arguments that let each command reach --print-config
    "align": ["a.jpg", "b.jpg", "-o", "out"],
    "build": ["{tmp}", "{tmp}", "-o", "{tmp}/ds"],
    "train": ["{tmp}", "-o", "{tmp}/run"],
    "evaluate": ["model.pt", "{tmp}"],
    "enhance": ["model.pt", "{tmp}", "-o", "{tmp}/out"],
    "inspect": ["{tmp}"],
}


def leaf_fields(section):
    cls = SECTIONS[section]
    for f in fields(cls):
        sub = nested_class(cls, f)
        if sub is None:
            yield section, cls, f.name
        else:
            yield from ((f.name, sub, g.name) for g in fields(sub))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_dataclass_field_has_a_flag(command):
    params = {p.name: p for p in cli.get_command(None, command).params}
    for section, cls, name in leaf_fields(COMMANDS[command]):
        param = params.get(f"{section}{SEP}{name}")
        assert param is not None, f"dpedkit {command}: no flag for {cls.__name__}.{name}"
        assert option_flag(cls, name) in param.opts, (param.opts, name)
        assert param.help, f"{cls.__name__}.{name} has no help"
    flags = [o for p in params.values() for o in getattr(p, "opts", [])]
    assert len(flags) == len(set(flags)), "a flag is used twice"


def test_build_help_offers_every_align_and_patch_option():
    out = CliRunner().invoke(cli, ["build", "--help"], terminal_width=200).output
    for cls in (AlignConfig, PatchConfig):
        for f in fields(cls):
            assert option_flag(cls, f.name) in out, f.name
    assert "[default: 0.5]" in out  # the defaults shown are the dataclass's


@pytest.mark.parametrize("command", COMMANDS)
def test_config_file_then_flags_on_every_command(command, tmp_path):
    """--config sets every command's options, a typed flag overrides it, --print-config shows the result."""
    section = COMMANDS[command]
    values = {"align": ("work_mp", 0.7, "--ratio", "0.75"), "build": ("test_fraction", 0.2, "--seed", "4"),
              "train": ("iters", 7, "--batch", "3"), "evaluate": ("batch", 9, "--split", "train"),
              "enhance": ("quality", 80, "--max-memory", "1.5"),
              "inspect": ("samples", 3, "--lowest", "2")}  # fmt: skip
    key, file_value, flag, flag_value = values[section]
    conf = tmp_path / "c.toml"
    extra = "vgg = 'random'\n" if section == "train" else "[train]\nvgg = 'random'\n"
    conf.write_text(f"[{section}]\n{key} = {file_value}\n{extra}[patch]\nncc_min = 0.95\n")
    args = [a.format(tmp=tmp_path) for a in ARGS[command]]
    res = CliRunner().invoke(cli, [command, *args, "--config", str(conf), flag, flag_value, "--print-config"])
    assert res.exit_code == 0, res.output
    doc = tomllib.loads(res.stdout)
    assert doc[section][key] == file_value
    flag_key = next(n for s, c, n in leaf_fields(section) if s == section and option_flag(c, n) == flag)
    assert str(doc[section][flag_key]) == flag_value
    if command == "build":
        assert doc["patch"]["ncc_min"] == 0.95 and doc["align"]["work_mp"] == 0.5
    # the printed file reads back to the same configuration
    again = tmp_path / "again.toml"
    again.write_text(res.stdout)
    res2 = CliRunner().invoke(cli, [command, *args, "--config", str(again), "--print-config"])
    assert res2.exit_code == 0 and res2.stdout == res.stdout


def test_bad_config_file_is_exit_2_with_the_reason(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text("[align]\nwork_mp = 'much'\n")
    res = CliRunner().invoke(cli, ["align", "a.jpg", "b.jpg", "-o", str(tmp_path), "--config", str(conf)])
    assert res.exit_code == 2 and "work_mp" in res.output


def test_align_records_its_config(tmp_path):
    from dpedkit.io import write_image
    from dpedkit.testing import synthetic_pairs

    name, phone, dslr, _ = next(synthetic_pairs(1, phone_mp=0.3, dslr_mp=0.6))
    write_image(tmp_path / "p.png", phone)
    write_image(tmp_path / "d.png", dslr)
    conf = tmp_path / "c.toml"
    conf.write_text("[align]\nwork_mp = 0.25\nmethod = 'ransac'\n")
    res = CliRunner().invoke(
        cli,
        [
            "align",
            str(tmp_path / "p.png"),
            str(tmp_path / "d.png"),
            "-o",
            str(tmp_path / "o"),
            "--config",
            str(conf),
            "--ratio",
            "0.75",
            "--json",
        ],  # fmt: skip
    )
    assert res.exit_code == 0, res.output
    recorded = json.loads((tmp_path / "o" / "alignment.json").read_text())["config"]
    assert (recorded["work_mp"], recorded["method"], recorded["ratio"]) == (0.25, "ransac", 0.75)


def test_resume_with_a_config_file_checks_its_keys(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text("[train]\nitres = 5\n")
    res = CliRunner().invoke(
        cli, ["train", str(tmp_path), "-o", str(tmp_path / "run"), "--resume", "--config", str(conf)]
    )
    assert res.exit_code == 2 and "unknown TrainConfig option(s) ['itres']" in " ".join(res.output.split())


def test_strip_rows_help_names_the_models_that_tile():
    from dpedkit.nn.registry import MODELS

    out = " ".join(CliRunner().invoke(cli, ["enhance", "--help"]).output.split())
    tiling = [n for n, s in MODELS.items() if s.tiles and s.enhances]
    assert tiling and f"for the models that tile ({', '.join(tiling)}:" in out  # read from the registry
    assert "the others always run whole and refuse it" in out


def test_the_readme_config_example_is_a_valid_file_with_every_build_section(tmp_path):
    from pathlib import Path

    from dpedkit.config import read_config_file

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "shoot.toml").write_text(example)
    sections = read_config_file(tmp_path / "shoot.toml")
    assert {"align", "patch", "pairs"} <= set(sections) and sections["pairs"]["by"] == "time"
    assert "`build` reads `[build]`, `[align]`, `[patch]` and `[pairs]`" in " ".join(readme.split())


@pytest.mark.parametrize("command", COMMANDS)
def test_print_config_needs_no_input(command, tmp_path):
    """--print-config only prints: the folders and files the command would read need not exist (README's example)."""
    missing = tmp_path / "nowhere"
    args = [a.format(tmp=missing) for a in ARGS[command]]
    conf = tmp_path / "shoot.toml"
    conf.write_text("[train]\nvgg = 'random'\n[patch]\nncc_min = 0.9\n")
    res = CliRunner().invoke(cli, [command, *args, "--config", str(conf), "--print-config"])
    assert res.exit_code == 0, res.output
    assert COMMANDS[command] in tomllib.loads(res.stdout)


def test_build_print_config_of_the_readme_then_a_real_build_of_missing_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("shoot.toml").write_text("[patch]\nncc_min = 0.9\n")
    args = ["build", "phone/", "dslr/", "-o", "dataset", "--config", "shoot.toml", "--ncc", "0.95"]
    res = CliRunner().invoke(cli, [*args, "--print-config"])
    assert res.exit_code == 0 and tomllib.loads(res.stdout)["patch"]["ncc_min"] == 0.95
    res = CliRunner().invoke(cli, args)
    assert (res.exit_code, res.output) == (2, "error: phone/: no such folder\n")
    Path("phone").mkdir()
    res = CliRunner().invoke(cli, args)
    assert (res.exit_code, res.output) == (2, "error: dslr/: no such folder\n")
    Path("dslr").write_text("")
    assert CliRunner().invoke(cli, args).output == "error: dslr/: a file, not a folder\n"
