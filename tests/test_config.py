"""The typed config: YAML round trip, strict checking with one error for all problems, shortcuts and dotted keys."""
import dataclasses
import typing

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from nettrain.cli import parse_extra
from nettrain.config import SECTIONS, SHORTCUTS, Config, parse_value
from nettrain.errors import ConfigError

# ---- YAML round trip --------------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False), _text)


def _value_for(hint, f):
    """A strategy of valid values for a config field of type `hint`."""
    choices = f.metadata.get("choices")
    if choices:
        return st.sampled_from(choices)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return st.one_of(st.none(), *[_value_for(a, f) for a in args if a is not type(None)])
    if hint is bool:
        return st.booleans()
    low, high, above, below, _ = f.metadata.get("bounds") or (None, None, False, False, "")
    if hint is int:
        return st.integers(-10**9 if low is None else low + above, 10**9 if high is None else high - below)
    if hint is float:
        return st.floats(low, high, exclude_min=above, exclude_max=below, allow_nan=False, allow_infinity=False)
    if hint is str:
        return _text
    if f.metadata.get("length"):   # numbers(...): exactly `length` numbers, each within the bounds
        number = st.floats(low, high, exclude_min=above, exclude_max=below, allow_nan=False, allow_infinity=False)
        return st.lists(number, min_size=f.metadata["length"], max_size=f.metadata["length"])
    if hint is list or origin is list:
        return st.lists(_scalar, max_size=3)
    if hint is dict or origin is dict:
        return st.dictionaries(st.text("abcdefghij_", min_size=1, max_size=8),
                               st.one_of(_scalar, st.lists(st.integers(), max_size=3)), max_size=3)
    raise AssertionError(f"no strategy for {hint}")


@st.composite
def configs(draw):
    d = {}
    for name, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        section = {}
        for f in dataclasses.fields(cls):
            if draw(st.booleans()):
                section[f.name] = draw(_value_for(hints[f.name], f))
        d[name] = section
    return Config.from_dict(d)


@settings(max_examples=60, deadline=None)
@given(configs())
def test_yaml_round_trip(cfg):
    assert Config.from_yaml(cfg.to_yaml()) == cfg


def test_default_round_trip_and_sections():
    cfg = Config()
    text = cfg.to_yaml()
    assert list(yaml.safe_load(text)) == list(SECTIONS)
    assert Config.from_yaml(text) == cfg
    assert Config.from_yaml("") == cfg   # an empty file is the defaults


def test_load_reads_a_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  name: sgd\n  lr: 1\ntrain:\n  precision: 32\n")
    cfg = Config.load(path)
    assert cfg.optim.name == "sgd" and cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.train.precision == "32"   # an int from YAML read as the string choice


def test_load_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        Config.load(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Config.from_yaml("train: [unclosed")
    with pytest.raises(ConfigError, match="must be a mapping"):
        Config.from_yaml("- a list")


# ---- one error listing every problem ------------------------------------------------------------------

def test_all_problems_in_one_error():
    bad = {"trian": {"epochs": 3},                      # unknown section
           "train": {"epochz": 3, "batch_size": "big"},  # unknown key, wrong type
           "optim": {"lr": True},                        # bool is not a number
           "run": {"progress": "bars"}}                  # not a choice
    with pytest.raises(ConfigError) as e:
        Config.from_dict(bad)
    msg = str(e.value)
    assert "\n" not in msg
    assert "unknown section 'trian'" in msg and "did you mean 'train'" in msg
    assert "unknown key train.epochz" in msg and "did you mean 'epochs'" in msg
    assert "valid: epochs, batch_size" in msg   # the valid keys are listed
    assert "train.batch_size must be an integer, got 'big'" in msg
    assert "optim.lr must be a number" in msg
    assert "run.progress must be one of auto, bar, lines, none" in msg and "did you mean 'bar'" in msg


@pytest.mark.parametrize("section,key,value", [
    ("train", "epochs", 2.5), ("train", "epochs", "3"), ("train", "shuffle", "yes"), ("data", "name", 3.5j),
    ("model", "args", [1]), ("optim", "betas", 0.9), ("train", "precision", "64"), ("data", "in_memory", "maybe"),
])
def test_wrong_types_are_rejected(section, key, value):
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        Config.from_dict({section: {key: value}})


def test_lossless_conversions_are_accepted(tmp_path):
    cfg = Config.from_dict({"optim": {"lr": 1, "betas": (0.8, 0.9)}, "data": {"dir": tmp_path},
                            "train": {"grad_clip": None}})
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == [0.8, 0.9]
    assert cfg.data.dir == str(tmp_path)


def test_exponent_numbers_are_floats_in_files_and_flags():
    """PyYAML (YAML 1.1) reads 1e-3 as a string; a config, like YAML 1.2 and JSON, reads it as 0.001."""
    cfg = Config.from_yaml("optim:\n  lr: 1e-3\n  args:\n    eps: 1E-8\ntrain:\n  ema: 9.99e-1\n")
    assert cfg.optim.lr == 0.001 and cfg.optim.args == {"eps": 1e-8} and cfg.train.ema == 0.999
    assert parse_value("1e-3") == 0.001 and parse_value("-2.5e+3") == -2500.0 and parse_value("1.0e3") == 1000.0
    assert parse_value('"1e-3"') == "1e-3" and parse_value("1e") == "1e" and parse_value("123") == 123
    assert Config().override(parse_extra(["--optim.lr", "3e-4"])).optim.lr == 0.0003
    named = Config().override({"model.name": "1e3"})   # a string that looks like one stays a string, written quoted
    assert Config.from_yaml(named.to_yaml()).model.name == "1e3"


def test_yes_no_choices_survive_yaml_booleans():
    """YAML 1.1 reads `no` as false: `data.in_memory: no` (from a file or --data.in_memory no) still means "no"."""
    assert Config.from_yaml("data:\n  in_memory: no\n").data.in_memory == "no"
    assert Config().override({"data.in_memory": parse_value("yes")}).data.in_memory == "yes"
    cfg = Config().override({"data.in_memory": "no"})
    assert Config.from_yaml(cfg.to_yaml()) == cfg
    with pytest.raises(ConfigError, match="train.shuffle must be true/false"):
        Config.from_dict({"train": {"shuffle": "no"}})


def test_section_must_be_a_mapping():
    with pytest.raises(ConfigError, match="train: must be a mapping"):
        Config.from_dict({"train": 5})


# ---- overrides -----------------------------------------------------------------------------------------

def test_every_shortcut_targets_a_real_key():
    dotted = {f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)}
    assert set(SHORTCUTS.values()) <= dotted


def test_shortcuts_and_dotted_keys_override():
    cfg = Config().override({"lr": 0.01, "batch_size": 32, "dataset": "mnist", "optim.momentum": 0.9,
                             "model.args.hidden": [10, 5], "train.tta": True, "precision": "32"})
    assert cfg.optim.lr == 0.01 and cfg.train.batch_size == 32 and cfg.data.name == "mnist"
    assert cfg.optim.momentum == 0.9 and cfg.model.args == {"hidden": [10, 5]} and cfg.train.tta is True
    assert cfg.train.precision == "32"
    assert Config().optim.lr == 1e-3   # the original is untouched


def test_override_errors_are_collected():
    with pytest.raises(ConfigError) as e:
        Config().override({"learning_rate": 0.1, "optim.lrr": 0.1, "epochs": "ten"})
    msg = str(e.value)
    assert "unknown option 'learning_rate'" in msg and "valid:" in msg
    assert "unknown key optim.lrr" in msg and "did you mean 'lr'" in msg
    assert "train.epochs must be an integer" in msg


def test_override_close_match_for_a_typo_of_a_shortcut():
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        Config().override({"batchsize": 3})


def test_override_into_a_non_mapping():
    with pytest.raises(ConfigError, match="optim.lr is not a mapping"):
        Config().override({"optim.lr.x": 1})


# ---- command-line values -------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [("0.9", 0.9), ("3", 3), ("true", True), ("[512, 128]", [512, 128]),
                                        ("null", None), ("adam", "adam"), ("{a: 1}", {"a": 1}), ("[oops", "[oops")])
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_parse_extra_forms():
    got = parse_extra(["--optim.momentum", "0.9", "--train.tta=true", "model.args.hidden=[10]",
                       "--batch-size", "8"])
    assert got == {"optim.momentum": 0.9, "train.tta": True, "model.args.hidden": [10], "batch_size": 8}
    cfg = Config().override(got)
    assert cfg.optim.momentum == 0.9 and cfg.train.tta and cfg.model.args["hidden"] == [10]
    assert cfg.train.batch_size == 8


def test_parse_extra_dangling_flag():
    from nettrain.errors import NettrainError
    with pytest.raises(NettrainError, match="unrecognized argument '--optim.momentum'"):
        parse_extra(["--optim.momentum"])
