"""Small things a user meets: summary with a data directory, the help naming --data.limit, what predict prints of a
text, and the one-line answers for a 1-D input, a label-less Dataset and inputs unlike the training data."""
import pytest
import torch

from nettrain.cli import main


def test_summary_takes_a_data_dir(tmp_path, capsys):
    assert main(["summary", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--model", "tudui"]) == 0
    assert "Total params" in capsys.readouterr().out


def test_fit_help_names_data_limit(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "--data.limit" in capsys.readouterr().out
