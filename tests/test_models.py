"""The model registry, the user's own modules by import path, and the fit check before training."""
import pytest
import torch
from torch import nn

from nettrain.errors import ModelError, NettrainError
from nettrain.models import MODELS, build_model, check_fits, load_object
from nettrain.models.text import TEXT_MODELS

IMAGE_SHAPES = [[1, 8, 8], [1, 28, 28], [3, 32, 32]]


@pytest.mark.parametrize("name", [n for n in MODELS.names() if n not in TEXT_MODELS])   # text: test_text.py
def test_every_model_forwards_the_image_shapes_it_supports(name):
    supported = []
    for shape in IMAGE_SHAPES:
        torch.manual_seed(0)
        try:
            model = build_model(name, shape, 7, {})
        except ModelError as e:   # too small for this model: a one-line error naming it
            assert name in str(e) and "\n" not in str(e)
            continue
        check_fits(model, name, shape, 7, "classification")   # a forward pass of 2 inputs -> [2, 7]
        if not supported:   # train mode, forward and backward on the smallest shape it takes
            model.train()
            out = model(torch.rand(2, *shape))
            assert out.shape == (2, 7)
            out.sum().backward()
            assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        supported.append(shape)
    assert [3, 32, 32] in supported and [1, 28, 28] in supported   # every model takes MNIST and CIFAR shapes


def test_mlp_takes_vectors_and_its_arguments():
    model = build_model("mlp", [2], 3, {"hidden": [10, 5], "activation": "tanh", "dropout": 0.1})
    assert model(torch.zeros(4, 2)).shape == (4, 3)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2, 10), (10, 5), (5, 3)]
    assert any(isinstance(m, nn.Tanh) for m in model) and any(isinstance(m, nn.Dropout) for m in model)
    single = build_model("mlp", [1], 1, {"hidden": 10})
    assert [m.out_features for m in single if isinstance(m, nn.Linear)] == [10, 1]


@pytest.mark.parametrize("name", ["cnn", "tudui", "lenet", "resnet18"])
def test_image_models_refuse_vectors(name):
    with pytest.raises(ModelError, match="needs images"):
        build_model(name, [2], 2, {})


def test_lenet_too_small_names_the_fix():
    with pytest.raises(ModelError, match=r"at least 16x16.*8x8"):
        build_model("lenet", [1, 8, 8], 10, {})


def test_unknown_model_argument():
    with pytest.raises(ModelError, match=r"takes no argument depth; it takes: width"):
        build_model("cnn", [1, 8, 8], 10, {"depth": 3})


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(NettrainError, match=r"unknown model 'tudoi' \(did you mean 'tudui'\?\)"):
        build_model("tudoi", [3, 32, 32], 10, {})


def test_tudui_is_the_tutorial_sequential():
    """The same layers, in the same order, as the tutorial's hand-written nn.Sequential."""
    model = build_model("tudui", [3, 32, 32], 10, {})
    expected = nn.Sequential(nn.Conv2d(3, 32, 5, 1, 2), nn.MaxPool2d(2), nn.Conv2d(32, 32, 5, 1, 2), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 5, 1, 2), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1024, 64),
                             nn.Linear(64, 10))
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in expected.state_dict().items()}
    assert [type(m) for m in model] == [type(m) for m in expected]


def test_lenet_state_dict_matches_the_official_tutorial_names():
    model = build_model("lenet", [3, 32, 32], 10, {})
    assert list(model.state_dict()) == [f"{layer}.{p}" for layer in ("conv1", "conv2", "fc1", "fc2", "fc3")
                                        for p in ("weight", "bias")]


USER_MODEL = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))

    def forward(self, x):
        return self.body(x)

def not_a_module():
    return 3
"""


def test_user_model_from_a_file_with_arguments(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(USER_MODEL)
    model = build_model(f"{path}:Net", [1, 8, 8], 10, {"width": 6})
    assert model.body[1].out_features == 6
    check_fits(model, "Net", [1, 8, 8], 10, "classification")


def test_user_model_errors(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(USER_MODEL)
    with pytest.raises(ModelError, match="does not exist"):
        build_model(f"{tmp_path / 'nope.py'}:Net", [1, 8, 8], 10, {})
    with pytest.raises(ModelError, match="has no 'Nett'.*Net"):
        build_model(f"{path}:Nett", [1, 8, 8], 10, {})
    with pytest.raises(ModelError, match="cannot build .* with arguments"):
        build_model(f"{path}:Net", [1, 8, 8], 10, {"depth": 2})
    with pytest.raises(ModelError, match="not a torch.nn.Module"):
        build_model(f"{path}:not_a_module", [1, 8, 8], 10, {})
    with pytest.raises(ModelError, match="cannot import 'no_such_pkg_xyz.nets'"):
        build_model("no_such_pkg_xyz.nets:Net", [1, 8, 8], 10, {})


def test_a_broken_model_file_can_be_fixed_and_loaded_in_the_same_process(tmp_path):
    """A file that failed to run is not kept half-made, and an edited file is run again: once fixed or changed,
    the next build uses it (a notebook's edit-and-rerun loop)."""
    path = tmp_path / "draft_net.py"
    path.write_text(USER_MODEL.replace("class Net(nn.Module):", "class Net(nn.Module:"))
    with pytest.raises(ModelError, match=r"draft_net.py fails to load \(SyntaxError: .* at draft_net.py:5\)"):
        build_model(f"{path}:Net", [1, 8, 8], 10, {})
    path.write_text(USER_MODEL)
    assert build_model(f"{path}:Net", [1, 8, 8], 10, {}).body[1].out_features == 4
    path.write_text(USER_MODEL.replace("width=4", "width=5"))   # edited again: the new code is what builds
    assert build_model(f"{path}:Net", [1, 8, 8], 10, {}).body[1].out_features == 5


def test_model_from_an_importable_module():
    model = build_model("torch.nn:Linear", [3], 2, {"in_features": 3, "out_features": 2})
    assert isinstance(model, nn.Linear)
    assert load_object("torch.nn:Identity", "model") is nn.Identity


def test_check_fits_wrong_output_size_and_wrong_input():
    with pytest.raises(ModelError, match=r"outputs \[2, 3\].*10 classes.*\[batch, 10\]"):
        check_fits(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), "x", [1, 8, 8], 10, "classification")
    with pytest.raises(ModelError, match=r"does not fit inputs of shape \[1, 8, 8\]"):
        check_fits(nn.Sequential(nn.Flatten(), nn.Linear(100, 10)), "x", [1, 8, 8], 10, "classification")
    with pytest.raises(ModelError, match="1 regression targets"):
        check_fits(nn.Linear(1, 2), "x", [1], 1, "regression")


def test_check_fits_leaves_training_mode_and_batchnorm_stats_alone():
    model = build_model("cnn", [1, 8, 8], 10, {})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    check_fits(model, "cnn", [1, 8, 8], 10, "classification")
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
