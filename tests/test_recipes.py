"""The shipped recipes load as valid configs, and the fast CIFAR model builds, whitens and trains a step."""
from pathlib import Path

import pytest
import torch

from nettrain.config import Config
from nettrain.models import build_model, check_fits

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_recipes_are_shipped():
    names = {p.name for p in RECIPES}
    assert {"mnist-fast.yaml", "cifar10-fast.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads_and_documents_itself(path):
    cfg = Config.load(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), "a recipe starts with a comment saying what it trains and how it was measured"
    assert "nettrain fit --config recipes/" + path.name in text
    assert Config.from_yaml(cfg.to_yaml()) == cfg


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_model_builds_for_its_dataset(path):
    cfg = Config.load(path)
    shape = {"mnist": [1, 28, 28], "cifar10": [3, 32, 32], "iris": [4], "text": [100]}[cfg.data.name]
    model = build_model(cfg.model.name, shape, 10, cfg.model.args)
    # a text model takes (token ids, lengths), not zeros of a shape
    example = (torch.tensor([[5, 6, 7], [8, 9, 0]]), torch.tensor([3, 2])) if cfg.data.name == "text" else None
    check_fits(model, cfg.model.name, shape, 10, "classification", example)


def test_fastnet_whitens_forwards_and_trains_a_step():
    torch.manual_seed(0)
    cfg = Config.load(Path(__file__).resolve().parents[1] / "recipes" / "cifar10-fast.yaml")
    model = build_model("fastnet", [3, 32, 32], 10, cfg.model.args)
    x = torch.randn(16, 3, 32, 32)
    model.init_from_data(x)
    w = model.whiten.weight
    assert not w.requires_grad and torch.isfinite(w).all() and w.abs().sum() > 0
    k = w.shape[-1]
    assert torch.allclose(w[: w.shape[0] // 2], -w[w.shape[0] // 2:])   # each filter with its negation
    # whitened patches: the first half of the filters decorrelate the k x k patches of the batch
    patches = x.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * k * k)
    z = patches @ w[: w.shape[0] // 2].reshape(w.shape[0] // 2, -1).T
    cov = z.T @ z / len(z)
    assert torch.allclose(cov, torch.eye(len(cov)), atol=0.05)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9, nesterov=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x.contiguous(memory_format=torch.channels_last))
        loss = torch.nn.functional.cross_entropy(out, torch.arange(16) % 10)
    assert out.shape == (16, 10)
    loss.backward()
    before = model.head.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.head.weight)
    assert w.grad is None   # the whitening filters stay frozen
    model.eval()
    with torch.no_grad():
        assert model(x[:2]).shape == (2, 10)


def test_fit_whitens_fastnet_from_its_own_normalized_training_images(tmp_path):
    """fit sets fastnet's frozen first layer from the training images, normalized as the model sees them, before
    the first step; training then leaves it as it was set."""
    import nettrain
    from nettrain.config import DataConfig
    from nettrain.data import from_user_data, make_batches
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 32, 32, 3), dtype=torch.uint8, generator=g)   # NHWC, as photos come
    y = torch.arange(48) % 4
    nettrain.fit(model="fastnet", data=(x, y), val_data=(x[:8], y[:8]), epochs=1, batch_size=16, precision="32",
                 run_dir=tmp_path / "run", **{"model.args.widths": [16, 32, 32], "run.progress": "none",
                                              "run.tensorboard": False, "run.report": False})
    trained = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]["whiten.weight"]
    data = from_user_data((x, y), (x[:8], y[:8]), cfg=DataConfig())
    images = next(iter(make_batches(data.train, data.info, DataConfig(), "cpu", 5000, train=False)))[0]
    expected = build_model("fastnet", [3, 32, 32], 4, {"widths": [16, 32, 32]})
    expected.init_from_data(images)
    assert torch.equal(trained, expected.whiten.weight)


def test_alternate_flip_mirrors_each_image_every_other_epoch():
    from nettrain.data import make_batches
    from nettrain.data.arrays import ArrayData, DataInfo
    x = torch.arange(40 * 4).view(40, 1, 1, 4).to(torch.uint8)   # each row increasing: a mirror is visible
    info = DataInfo(kind="image", shape=[1, 1, 4], mean=[0.0], std=[1 / 255])
    cfg = Config().override({"data.flip": True, "data.alternate_flip": True}).data

    def mirrored(epoch, seed=1):
        batches = make_batches(ArrayData(x, torch.arange(40)), info, cfg, "cpu", 8, train=True, shuffle=True,
                               seed=seed)
        batches.set_epoch(epoch)
        out = {}
        for xb, yb in batches:
            for xi, yi in zip(xb, yb):
                row = xi[0, 0].round().to(torch.uint8)
                assert torch.equal(row, x[yi, 0, 0]) or torch.equal(row, x[yi, 0, 0].flip(0))
                out[int(yi)] = torch.equal(row, x[yi, 0, 0].flip(0))
        return [out[i] for i in range(40)]

    e1, e2, e3 = mirrored(1), mirrored(2), mirrored(3)
    assert all(a != b for a, b in zip(e1, e2)) and e1 == e3   # every other epoch
    assert 8 < sum(e1) < 32                                    # about half start mirrored
    assert mirrored(1) == e1 and mirrored(1, seed=2) != e1     # from the seed alone
