"""The one config surface: config dataclasses, their TOML file, defaults < file < flags."""

import re
import tomllib
from dataclasses import fields
from typing import get_args

import pytest

from dpedkit.config import (
    SECTIONS,
    AlignConfig,
    BuildConfig,
    Interpolation,
    Method,
    PatchConfig,
    PatchInterpolation,
    TrainConfig,
    field_docs,
    nested_class,
    read_config_file,
    resolve,
    to_toml,
)
from dpedkit.errors import ConfigError

# one non-default value per section, of every kind of field (float, Literal, bool, tuple, None, dict)
CHANGED = {
    "align": {"work_mp": 0.7, "method": "prosac", "weighted": False, "scale_range": [0.5, 4.0]},
    "patch": {"ncc_min": 0.93, "rotation": "none", "size": 64},
    "build": {"test_images": 3, "keep_test_full": False},
    "train": {"model": "srcnn", "model_config": {"channels1": 8}, "lr": 1e-4},
    "evaluate": {"split": "train", "phone": "iphone"},
    "enhance": {"format": "jpg", "strip_rows": 64},
}


def test_every_field_of_every_section_is_documented():
    for cls in SECTIONS.values():
        docs = field_docs(cls)
        missing = [f.name for f in fields(cls) if not docs.get(f.name)]
        assert not missing, f"{cls.__name__}: no Attributes entry for {missing}"


def test_docstring_markup_becomes_plain_help():
    assert field_docs(AlignConfig)["method"].startswith("robust estimator: magsac (MAGSAC++)")
    assert "``" not in " ".join(field_docs(PatchConfig).values())


@pytest.mark.parametrize("section", list(SECTIONS))
def test_toml_round_trip(section, tmp_path):
    config = resolve(section, CHANGED)
    path = tmp_path / "c.toml"
    path.write_text(to_toml(config, section, title="t"))
    assert resolve(section, read_config_file(path)) == config
    if section != "train":  # the default train config names no VGG file, which its dped model needs
        assert resolve(section) == SECTIONS[section]()  # no file, no flags: the defaults


def test_defaults_then_file_then_flags():
    file = {"build": {"seed": 4, "test_fraction": 0.2}, "patch": {"ncc_min": 0.95}}
    file |= {"train": {"iters": 5, "vgg": "random"}}
    flags = {"build": {"seed": 9}, "align": {"work_mp": 0.3}}
    c = resolve("build", file, flags)
    assert isinstance(c, BuildConfig) and (c.seed, c.test_fraction) == (9, 0.2)  # flag beats file beats default
    assert c.patch.ncc_min == 0.95 and c.align.work_mp == 0.3 and c.align.ratio == AlignConfig().ratio
    assert resolve("train", file).iters == 5  # one file serves every command: each reads its sections


def test_file_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[align]\nwork_mp = \n")
    with pytest.raises(ConfigError, match="not valid TOML.*line 2"):
        read_config_file(bad)
    bad.write_text("[alignment]\nwork_mp = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section.*alignment.*\[align\]"):
        read_config_file(bad)
    bad.write_text("seed = 1\n")
    with pytest.raises(ConfigError, match="outside a section"):
        read_config_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        read_config_file(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"unknown AlignConfig option\(s\) \['work_megapixels'\]"):
        resolve("align", {"align": {"work_megapixels": 1}})
    with pytest.raises(ConfigError, match="method must be one of"):
        resolve("align", {"align": {"method": "lmeds"}})
    with pytest.raises(ConfigError, match="work_mp must be a number; got 'much'"):
        resolve("align", {"align": {"work_mp": "much"}})
    with pytest.raises(ConfigError, match="size must be an integer; got 64.5"):
        resolve("build", {"patch": {"size": 64.5}})
    with pytest.raises(ConfigError, match="scale_range must hold a number values"):
        resolve("align", {"align": {"scale_range": ["a", 2]}})
    with pytest.raises(ConfigError, match="test_images must be an integer or unset"):
        resolve("build", {"build": {"test_images": "3"}})
    assert resolve("align", {"align": {"work_mp": 1}}).work_mp == 1.0  # an int is a number


def test_unset_options_are_comments_and_nested_configs_are_sections():
    text = to_toml(BuildConfig(), "build")
    assert "# test_images = (unset)" in text and "[align]" in text and "[patch]" in text
    assert tomllib.loads(text)["patch"]["size"] == 100
    assert [f.name for f in fields(BuildConfig) if nested_class(BuildConfig, f)] == ["align", "patch", "pairs"]


def test_choices_come_from_one_literal_each():
    from dpedkit.align.homography import METHODS
    from dpedkit.align.warp import INTERPOLATIONS
    from dpedkit.dataset.patches import _INTER

    assert tuple(METHODS) == get_args(Method) and tuple(INTERPOLATIONS) == get_args(Interpolation)
    assert tuple(_INTER) == get_args(PatchInterpolation)
    assert TrainConfig.__dataclass_fields__["model"].type == "ModelName"


def test_every_config_class_documents_each_field_on_its_own():
    """Help text comes from the Attributes section: one entry per field (no 'a; ``b``: ...' shared lines)."""
    from dpedkit.bench.build import BuildBenchConfig
    from dpedkit.demo import DemoConfig
    from dpedkit.inspect.report import ReportConfig
    from dpedkit.synth.pairs import SynthConfig

    for cls in (*SECTIONS.values(), SynthConfig, DemoConfig, ReportConfig, BuildBenchConfig):
        docs = field_docs(cls)
        assert set(docs) == {f.name for f in fields(cls)}, cls.__name__
        names = {f.name for f in fields(cls)}
        shared = [k for k, v in docs.items() if set(re.findall(r"; (\w+): ", v)) & names]
        assert not shared, (cls.__name__, shared)


def test_values_are_kept_as_given():
    """An int stays an int and inf stays inf: a config's dict (and every file recording it) is what was given."""
    c = AlignConfig(threshold_px=1, max_rmse_px=float("inf"))
    assert c.to_dict()["threshold_px"] == 1 and isinstance(c.to_dict()["threshold_px"], int)
    assert c.to_dict()["max_rmse_px"] == float("inf") and AlignConfig.from_dict(c.to_dict()) == c
    text = to_toml(c, "align")
    assert "max_rmse_px = inf" in text and resolve("align", tomllib.loads(text)) == c


def test_nested_tables_and_table_options():
    with pytest.raises(ConfigError, match=r"align options go in their own \[align\] section"):
        resolve("build", {"build": {"align": {"work_mp": 0.7}}})
    file = {"train": {"vgg": "random", "model_config": {"channels": 32, "blocks": 2}}}
    merged = resolve("train", file, {"train": {"model_config": {"blocks": 1}}})
    assert merged.model_config == {"channels": 32, "blocks": 1}  # a flag changes one key, the file keeps the rest
