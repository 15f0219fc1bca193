"""Image folders made with PIL: mixed sizes, modes and formats, a corrupt file, the decode cache, and predict."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nettrain
import nettrain.data.folder as folder_mod
from nettrain.cli import main
from nettrain.config import Config
from nettrain.data import load_data
from nettrain.errors import DataError
from conftest import QUIET_API

# (extension, mode, size): every mode and format, most files 16x16
VARIANTS = [("png", "L", (16, 16)), ("jpg", "RGB", (16, 16)), ("bmp", "P", (16, 16)), ("webp", "RGBA", (16, 16)),
            ("png", "RGB", (20, 12)), ("png", "RGBA", (24, 24)), ("jpeg", "L", (16, 16)), ("webp", "RGB", (16, 16))]
CLASSES = ["dark", "light"]


def make_image(path, label, ext, mode, size, rng):
    base = 50 if label == 0 else 200
    pixels = np.clip(rng.normal(base, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(pixels).convert(mode)
    im.save(path, quality=95) if ext in ("jpg", "jpeg", "webp") else im.save(path)


def make_folder(root, n_train=16, n_val=4, corrupt=True, seed=0):
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for label, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                ext, mode, size = VARIANTS[(i + label) % len(VARIANTS)]
                make_image(d / f"{i}.{ext}", label, ext, mode, size, rng)
    if corrupt:
        (root / "train" / "dark" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return root


def cfg(root, **kw):
    return Config().override({"dataset": "imagefolder", "data_dir": str(root), **kw}).data


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("imgs") / "photos")


@pytest.fixture(scope="module")
def folder_run(folder, tmp_path_factory):
    return nettrain.fit(dataset="imagefolder", data_dir=folder, model="cnn", epochs=4, lr=0.01, precision="32",
                        batch_size=8, run_dir=tmp_path_factory.mktemp("runs") / "run", **{"model.args.width": 8},
                        **QUIET_API)


def test_fit_trains_on_mixed_files_and_skips_the_corrupt_one(folder, tmp_path, capfd):
    run = nettrain.fit(dataset="imagefolder", data_dir=folder, model="cnn", epochs=4, lr=0.01, precision="32",
                       batch_size=8, run_dir=tmp_path / "run", **{"model.args.width": 8}, **QUIET_API)
    err = capfd.readouterr().err
    assert "warning: skipped" in err and "broken.png" in err
    assert run.model.info.shape == [3, 16, 16] and run.model.classes == CLASSES   # the most common size
    assert run.model.info.image_size == 16
    assert run.test["examples"] == 8 and run.test["acc"] >= 0.75
    assert run.metrics[-1]["train_loss"] < run.metrics[0]["train_loss"]


def test_every_readable_file_is_loaded_converted_and_resized(folder):
    d = load_data(cfg(folder))
    assert len(d.train) == 2 * 16 and len(d.val) == 2 * 4   # the corrupt file is left out
    assert d.train.x.shape[1:] == (3, 16, 16) and d.train.x.dtype == torch.uint8
    assert d.train.y.tolist() == [0] * 16 + [1] * 16
    means = d.train.x.float().mean(dim=(1, 2, 3))
    assert (means[:16] < 110).all() and (means[16:] > 140).all()   # pixels survive every mode and format
    gray = load_data(cfg(folder, **{"data.channels": 1, "image_size": 10}))
    assert gray.train.x.shape[1:] == (1, 10, 10) and gray.info.image_size == 10


def test_cache_is_reused_then_rebuilt_on_change_or_corruption(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "photos", n_train=4, n_val=2, corrupt=False)
    decoded = []
    real = folder_mod.read_many

    def counting(paths, *args, **kw):
        decoded.append(len(paths))
        return real(paths, *args, **kw)

    monkeypatch.setattr(folder_mod, "read_many", counting)
    first = load_data(cfg(root))
    assert decoded == [8, 4]   # train and val decoded once
    again = load_data(cfg(root))
    assert decoded == [8, 4]   # ... and read from the cache the second time
    assert torch.equal(first.train.x, again.train.x) and torch.equal(first.val.y, again.val.y)
    # decoded or cached, the pixels stay NHWC in memory: the models' channels_last layout, never copied per run
    assert first.train.x.is_contiguous(memory_format=torch.channels_last) and not first.train.x.is_contiguous()
    assert again.train.x.is_contiguous(memory_format=torch.channels_last) and not again.train.x.is_contiguous()

    changed = sorted((root / "train" / "light").iterdir())[0]   # a file changes: train is decoded again, val not
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(changed)
    st = os.stat(changed)
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = load_data(cfg(root))
    assert decoded == [8, 4, 8]
    assert not torch.equal(third.train.x, first.train.x) and int(third.train.x[4].max()) == 0

    for cache in (root / ".nettrain-cache").glob("train-*.npz"):   # a corrupt cache is rebuilt, not trusted
        cache.write_bytes(b"PK\x03\x04 not really a cache")
    fourth = load_data(cfg(root))
    assert decoded == [8, 4, 8, 8] and torch.equal(fourth.train.x, third.train.x)
    assert not list((root / ".nettrain-cache").glob("*.tmp*"))


def test_cli_predict_folder_names_the_corrupt_file_and_predicts_the_rest(folder_run, folder, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i, (label, ext) in enumerate([(0, "png"), (1, "jpg"), (1, "webp"), (0, "bmp")]):
        rng = np.random.default_rng(i)
        make_image(inputs / f"{i}-{CLASSES[label]}.{ext}", label, ext, "RGB", (16 + 4 * i, 16), rng)
    (inputs / "zz-corrupt.jpg").write_bytes(b"not an image at all")
    (inputs / "notes.txt").write_text("not an image file, ignored")

    assert main(["predict", str(folder_run.dir), str(inputs), "--json", "--topk", "2"]) == 1
    captured = capsys.readouterr()
    err_lines = captured.err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("nettrain: error: ") and "zz-corrupt.jpg" in err_lines[0]
    result = json.loads(captured.out)
    assert [os.path.basename(r["file"]) for r in result["predictions"]] == \
        ["0-dark.png", "1-light.jpg", "2-light.webp", "3-dark.bmp"]
    for r in result["predictions"]:
        assert len(r["predictions"]) == 2 and {p["class"] for p in r["predictions"]} == set(CLASSES)
        assert sum(p["probability"] for p in r["predictions"]) == pytest.approx(1, abs=1e-4)
        assert r["predictions"][0]["class"] in os.path.basename(r["file"])   # and they are right
    assert [os.path.basename(e["file"]) for e in result["errors"]] == ["zz-corrupt.jpg"]

    assert main(["predict", str(folder_run.dir), str(inputs / "1-light.jpg")]) == 0   # plain text output
    out = capsys.readouterr().out
    assert out.startswith(str(inputs / "1-light.jpg") + ": light ")


def test_predict_file_paths_match_the_training_pipeline(folder_run, folder):
    """A file given to predict is read exactly as in training: the same pixels give the same probabilities."""
    paths = sorted((folder / "val" / "light").iterdir())
    d = load_data(cfg(folder))
    from_files = folder_run.model.predict([str(p) for p in paths])
    from_tensor = folder_run.model.predict(d.val.x[4:])   # the decoded val images of class light
    assert torch.allclose(from_files.probs, from_tensor.probs, atol=1e-6)


def test_a_cache_being_written_by_another_run_is_left_alone(tmp_path):
    """Two runs decoding one folder at once each write their own temporary file (a shared name let one rename the
    other's half-written file into place, and the other's rename then failed)."""
    root = make_folder(tmp_path / "photos", n_train=2, n_val=1, corrupt=False)
    load_data(cfg(root))
    cache = root / ".nettrain-cache"
    finished = {p.name: p.read_bytes() for p in cache.glob("train-*.npz")}
    for p in cache.glob("*.npz"):   # as if nothing were cached yet, while another run is writing the train cache
        p.unlink()
    other = cache / (next(iter(finished)).replace(".npz", ".tmp.npz"))
    other.write_bytes(b"half written by another run")
    again = load_data(cfg(root))
    assert other.read_bytes() == b"half written by another run" and len(again.train) == 4
    assert {p.name for p in cache.glob("train-*.npz")} - {other.name} == set(finished)


def test_folder_layout_errors(tmp_path):
    with pytest.raises(DataError, match="has no train/ folder"):
        load_data(cfg(tmp_path))
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_data(cfg(tmp_path))
    (tmp_path / "train" / "cat").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_data(cfg(tmp_path))
    make_image(tmp_path / "train" / "cat" / "a.png", 0, "png", "RGB", (8, 8), np.random.default_rng(0))
    (tmp_path / "val" / "dog").mkdir(parents=True)
    with pytest.raises(DataError, match="class folders that train/ lacks: dog"):
        load_data(cfg(tmp_path))
    (tmp_path / "train" / "dog").mkdir()   # a class folder with nothing in it: a class never learned
    (tmp_path / "train" / "dog" / "notes.txt").write_text("to do")
    with pytest.raises(DataError, match="class folders with no image files in .*train: dog; add their images or"):
        load_data(cfg(tmp_path))


def test_cache_goes_to_the_user_cache_when_the_folder_is_read_only(tmp_path, monkeypatch):
    """A data folder nettrain may not write to (a shared, read-only dataset) gets its decode cache in
    $XDG_CACHE_HOME/nettrain instead, reused on the next load."""
    root = make_folder(tmp_path / "photos", n_train=2, n_val=1, corrupt=False)
    real_mkdir = os.mkdir

    def read_only(path, *args, **kw):   # what mkdir raises in a folder without write permission
        if Path(path).name == ".nettrain-cache":
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, *args, **kw)

    monkeypatch.setattr(os, "mkdir", read_only)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    decoded = []
    real = folder_mod.read_many
    monkeypatch.setattr(folder_mod, "read_many",
                        lambda paths, *a, **kw: decoded.append(len(paths)) or real(paths, *a, **kw))
    first = load_data(cfg(root))
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "nettrain").iterdir()) == ["train", "val"]
    assert not (root / ".nettrain-cache").exists()
    again = load_data(cfg(root))
    assert decoded == [4, 2] and torch.equal(first.train.x, again.train.x)


def test_many_unreadable_files_are_summed_up_and_bad_channels_named(tmp_path, capfd):
    root = make_folder(tmp_path / "photos", n_train=2, n_val=1, corrupt=False)
    for i in range(7):
        (root / "train" / "dark" / f"junk{i}.png").write_bytes(b"junk")
    data = load_data(cfg(root))
    err = capfd.readouterr().err
    assert len(data.train) == 4 and err.count("warning: skipped") == 6   # five named, then one line for the rest
    assert "skipped 2 more unreadable images" in err
    with pytest.raises(DataError, match="data.channels must be 1 .grayscale. or 3 .RGB., got 2"):
        load_data(cfg(root, **{"data.channels": 2}))


def test_large_photos_get_a_hint_to_resize(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(folder_mod, "LARGE_IMAGES", 20)   # the test's 24x24 files count as large photos here
    root = make_folder(tmp_path / "photos", n_train=2, n_val=1, corrupt=False)
    for i, name in enumerate(["a", "b", "c", "d", "e"]):   # outnumber the 16x16 files
        make_image(root / "train" / "dark" / f"{name}.png", 0, "png", "RGB", (24, 24), np.random.default_rng(i))
    load_data(cfg(root))
    assert "are 24x24 (their most common size); training at that size is slow: --image-size 224" in \
        capfd.readouterr().err
    load_data(cfg(root, **{"image_size": 24}))   # chosen on purpose: no hint
    assert "--image-size" not in capfd.readouterr().err


def test_only_corrupt_files(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "x.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="could be read|no readable images"):
        load_data(cfg(tmp_path, **{"image_size": 8}))


def test_without_a_val_split_train_is_split(tmp_path):
    root = make_folder(tmp_path / "p", n_train=10, n_val=0, corrupt=False)
    for d in (root / "val").iterdir():
        d.rmdir()
    (root / "val").rmdir()
    d = load_data(cfg(root))
    assert (len(d.train), len(d.test)) == (16, 4)


def test_dataloader_path_for_large_folders(tmp_path, capsys):
    """Folders too big for memory are read by a DataLoader; a corrupt file is skipped there too."""
    root = make_folder(tmp_path / "p", n_train=6, n_val=2)
    d = load_data(cfg(root, **{"data.in_memory": "no"}))
    assert isinstance(d.train, folder_mod.FolderDataset) and len(d.train) == 13
    assert main(["fit", "--dataset", "imagefolder", "--data-dir", str(root), "--data.in_memory", "no",
                 "--model", "mlp", "--model.args.hidden", "[8]", "--epochs", "1", "--batch-size", "4",
                 "--precision", "32", "--run-dir", str(tmp_path / "run"), "--run.progress", "none",
                 "--run.tensorboard", "false", "--run.report", "false", "--run.report", "false"]) == 0
    err = capsys.readouterr().err
    assert "warning: skipped" in err and "broken.png" in err
    assert nettrain.load(tmp_path / "run").evaluate()["examples"] == 4
    assert nettrain.Config.load(tmp_path / "run" / "config.yaml").data.in_memory == "no"
    assert not list(root.glob(".nettrain-cache/*.npz"))   # nothing decoded into a cache


def test_small_files_decode_in_a_loop_and_threads_give_the_same_result(folder, monkeypatch):
    import nettrain.data.images as images
    from nettrain.data.folder import scan
    _, splits = scan(folder)
    paths = [p for p, _ in splits["train"]] * 3   # past the probe, the corrupt file included
    pools = []

    class Pool(images.ThreadPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(images, "ThreadPoolExecutor", Pool)
    # the choice is timed (the first files' decode time): fixed here, as a loaded machine decodes slowly
    monkeypatch.setattr(images, "THREADS_FROM_SECONDS", float("inf"))
    in_a_loop = images.read_many(paths, 3, 16)
    assert not pools   # Python-bound files: no threads
    monkeypatch.setattr(images, "THREADS_FROM_SECONDS", 0.0)
    in_threads = images.read_many(paths, 3, 16)
    assert len(pools) == 1
    assert torch.equal(in_a_loop[0], in_threads[0]) and in_a_loop[1:] == in_threads[1:]
    assert len(in_a_loop[2]) == 3 and len(in_a_loop[1]) == len(paths) - 3   # the broken file, thrice, named
