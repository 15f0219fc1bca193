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


def test_predicted_texts_are_cut_between_words():
    from nettrain.cli import clip_words
    text = "Congratulations you have won a free holiday to the Canary Islands, call now to claim"
    shown = clip_words(text)
    assert shown.endswith("\u2026") and len(shown) <= 61
    assert text.startswith(shown[:-1]) and text[len(shown) - 1] in " ,"   # it ends where a word ended
    assert clip_words("short text") == "short text"


def test_one_dimensional_inputs_say_the_shape_given_and_the_one_taken(tmp_path):
    import nettrain
    x = torch.randn(50)
    with pytest.raises(nettrain.NettrainError, match=r"shape \[50\].*\[examples, features\].*reshape\(-1, 1\)"):
        nettrain.fit(data=(x, (x > 0).long()), model="mlp", epochs=1, run_dir=str(tmp_path / "run"))


class _InputsOnly(torch.utils.data.Dataset):
    def __len__(self):
        return 20

    def __getitem__(self, i):
        return torch.full((4,), float(i))


def test_a_dataset_without_labels_is_told_the_labels_are_missing(tmp_path):
    import nettrain
    with pytest.raises(nettrain.NettrainError, match=r"inputs alone \(a Tensor of shape \[4\]\), without labels"):
        nettrain.fit(data=_InputsOnly(), model="mlp", epochs=1, run_dir=str(tmp_path / "run"))


def test_predict_warns_of_images_unlike_the_training_images(tmp_path, capsys):
    """Light strokes on black, as MNIST; then one drawn dark on white, as a user's scan is."""
    import nettrain
    from conftest import QUIET_CPU
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 1, 8, 8, generator=g) < 0.15).to(torch.uint8) * 255
    run = nettrain.fit(data=(x, torch.arange(64) % 2), model="mlp", epochs=1, run_dir=str(tmp_path / "run"),
                       **QUIET_CPU)
    capsys.readouterr()
    run.model.predict(x[:4].permute(0, 2, 3, 1).numpy())
    assert "unlike the training" not in capsys.readouterr().err
    run.model.predict((255 - x[:1]).permute(0, 2, 3, 1).numpy())
    err = capsys.readouterr().err
    assert "1 of 1 images look unlike the training images" in err and "inverted" in err, err
