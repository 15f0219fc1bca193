"""A kind's training defaults (Kind.training; training.py's _with_kind_defaults): taken where the user set nothing,
recorded in config.yaml, and every option the user gives wins (benchmarks/defaults.py measures them)."""
from types import SimpleNamespace

import pytest
import yaml

import nettrain
from nettrain.config import Config, TrainConfig
from nettrain.wiring import _with_kind_defaults
from conftest import QUIET_CPU, staged


def recorded(run) -> dict:
    return yaml.safe_load((run.dir / "config.yaml").read_text())


@pytest.mark.slow   # 50 epochs, each with its checkpoints
def test_an_iris_fit_with_no_options_reaches_95_percent_and_records_what_trained(tmp_path):
    run = nettrain.fit(dataset="iris", run_dir=str(tmp_path / "run"), **QUIET_CPU)
    assert run.test["acc"] >= 0.95   # LogisticRegression: 96.7% on this split; the generic settings: 80%
    cfg = recorded(run)
    assert cfg["model"] == {"name": "mlp", "args": {"hidden": [32], "dropout": 0.3}, "flatten": None}
    assert (cfg["optim"]["name"], cfg["optim"]["lr"], cfg["optim"]["weight_decay"]) == ("adamw", 0.01, 0.5)
    assert (cfg["train"]["epochs"], cfg["train"]["batch_size"], cfg["sched"]["name"]) == (50, 32, "cosine")


def test_an_option_the_user_gives_wins_over_the_kinds_default(tmp_path):
    run = nettrain.fit(dataset="iris", epochs=1, optimizer="sgd", run_dir=str(tmp_path / "run"),
                       **{"model.args.hidden": [8], **QUIET_CPU})
    cfg = recorded(run)
    assert cfg["train"]["epochs"] == 1 and cfg["model"]["args"] == {"hidden": [8]}
    # the optimizer named: torch's settings for it, not those chosen for AdamW; the batch size still the kind's
    assert (cfg["optim"]["name"], cfg["optim"]["lr"], cfg["optim"]["weight_decay"]) == ("sgd", 0.001, 0.0)
    assert cfg["train"]["batch_size"] == 32


def test_a_key_named_anywhere_is_the_users_and_a_run_config_takes_no_default():
    defaults = {"train.epochs": 50, "train.batch_size": 32}
    named = Config.from_yaml("train: {epochs: 10}").with_defaults(defaults)
    assert (named.train.epochs, named.train.batch_size) == (10, 32)
    assert Config(train=TrainConfig(epochs=3)).with_defaults(defaults).train.epochs == 3   # built by hand
    assert Config().override({"epochs": 10}).with_defaults(defaults).train.epochs == 10
    written = Config.from_yaml(Config().to_yaml())   # a run's config.yaml names every key
    assert written.with_defaults(defaults) == Config()


def test_bilstm_takes_its_tuned_setting_with_the_vocabulary_options_unless_given():
    text = SimpleNamespace(kind="text")
    cfg = _with_kind_defaults(Config().override({"model": "bilstm", "dataset": "text"}), None, text)
    assert cfg.data.args == {"min_freq": 2, "bucket": True}
    assert (cfg.optim.lr, cfg.train.epochs, cfg.train.batch_size, cfg.model.args) == (0.005, 6, 64, {"embed": 128})
    mine = Config().override({"model": "bilstm", "dataset": "text", "data.args.tokenizer": "chars", "lr": 0.1})
    cfg = _with_kind_defaults(mine, None, text)
    assert cfg.data.args == {"tokenizer": "chars"} and cfg.optim.lr == 0.1 and cfg.train.epochs == 6
    assert _with_kind_defaults(Config(), None, text).model.name == "fasttext"


@pytest.mark.slow
def test_the_default_text_model_on_a_sentiment_file(tmp_path):
    file = staged("sentiment-sentences", "imdb.csv")
    run = nettrain.fit(dataset="text", data_dir=str(file), run_dir=str(tmp_path / "run"), **QUIET_CPU)
    cfg = recorded(run)
    assert cfg["model"]["name"] == "fasttext" and cfg["model"]["args"] == {"embed": 16, "dropout": 0.5}
    assert (cfg["optim"]["lr"], cfg["train"]["epochs"], cfg["train"]["batch_size"]) == (0.02, 10, 32)
    assert run.test["acc"] >= 0.72   # 200 test sentences; the generic settings: 67%, TF-IDF + LR 74%
