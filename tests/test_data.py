"""Datasets by name, the user's npz folders and arrays, augmentation and batch iteration."""
import gzip
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import nettrain
from nettrain.config import Config, DataConfig
from nettrain.data import ArrayData, DataInfo, from_user_data, load_data, make_batches
from nettrain.data.arrays import images_from_numpy, split
from nettrain.data.augment import random_crop, random_flip
from nettrain.data.batches import BatchPrep, InMemoryBatches
from nettrain.errors import DataError


def data_cfg(**kw) -> DataConfig:
    return Config().override({f"data.{k}": v for k, v in kw.items()}).data


# ---- bundled and toy data ---------------------------------------------------------------------------------

def test_digits():
    d = load_data(data_cfg(name="digits"))
    assert d.info.kind == "image" and d.info.shape == [1, 8, 8] and d.info.classes == [str(c) for c in range(10)]
    assert (len(d.train), len(d.test)) == (1438, 359)
    assert d.train.x.dtype == torch.uint8 and d.train.x.shape == (1438, 1, 8, 8)
    assert int(d.train.x.max()) == 255 and int(d.train.x.min()) == 0   # 0-16 gray levels scaled to 0-255
    assert d.val is d.test   # validated on the test split unless val_fraction is set
    assert d.train.y.dtype == torch.int64 and set(d.train.y.tolist()) == set(range(10))
    assert len(d.info.mean) == 1 and 0 < d.info.mean[0] < 1 and 0 < d.info.std[0] < 1


def test_digits_split_is_seeded_and_val_fraction_holds_out_train():
    a, b = load_data(data_cfg(name="digits")), load_data(data_cfg(name="digits"))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    c = load_data(data_cfg(name="digits", split_seed=1))
    assert not torch.equal(a.test.x, c.test.x)
    v = load_data(data_cfg(name="digits", val_fraction=0.25))
    assert len(v.train) + len(v.val) == 1438 and len(v.val) == round(1438 * 0.25) and len(v.test) == 359


def test_quadratic_is_the_tutorial_data():
    d = load_data(data_cfg(name="quadratic"))
    assert d.info.kind == "vector" and d.info.task == "regression" and d.info.outputs == 1
    x, y = d.train.x, d.train.y
    assert x.shape == (100, 1) and y.shape == (100, 1)
    assert torch.equal(x, torch.linspace(-1, 1, 100).unsqueeze(1))
    noise = y - x.pow(2)
    assert noise.min() >= 0 and noise.max() <= 0.2 and noise.std() > 0.03


def test_two_gaussians_is_the_tutorial_data():
    d = load_data(data_cfg(name="two-gaussians"))
    assert d.info.task == "classification" and d.info.classes == ["0", "1"] and d.info.shape == [2]
    x, y = d.train.x, d.train.y
    assert x.shape == (200, 2) and y.tolist() == [0] * 100 + [1] * 100
    assert torch.allclose(x[:100].mean(0), torch.tensor([2.0, 2.0]), atol=0.3)
    assert torch.allclose(x[100:].mean(0), torch.tensor([-2.0, -2.0]), atol=0.3)


def test_unknown_dataset_suggests_the_closest():
    with pytest.raises(nettrain.NettrainError, match=r"unknown dataset 'mnsit' \(did you mean 'mnist'\?\)"):
        load_data(data_cfg(name="mnsit"))


# ---- npz folders --------------------------------------------------------------------------------------

def write_npz(folder, split="train", **arrays):
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{split}.npz", **arrays)
    return folder


def test_npz_rgb_with_test_split_and_classes(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (20, 6, 5, 3), dtype=np.uint8)
    write_npz(tmp_path, images=imgs, labels=np.arange(20) % 3, classes=np.array(["a", "b", "c"]))
    write_npz(tmp_path, "test", images=imgs[:4], labels=np.array([0, 1, 2, 0]))
    d = load_data(data_cfg(name="npz", dir=tmp_path))
    assert d.info.shape == [3, 6, 5] and d.info.classes == ["a", "b", "c"]
    assert (len(d.train), len(d.test)) == (20, 4)
    assert torch.equal(d.train.x, torch.from_numpy(imgs).permute(0, 3, 1, 2))   # NHWC -> NCHW, pixels untouched
    assert torch.equal(d.train.y, torch.from_numpy(np.arange(20) % 3))


def test_npz_gray_nhw_without_test_split_is_split(tmp_path):
    imgs = np.zeros((50, 4, 4), dtype=np.uint8)
    imgs[25:] = 200
    write_npz(tmp_path, images=imgs, labels=np.repeat([0, 1], 25))
    d = load_data(data_cfg(name="npz", dir=tmp_path))
    assert d.info.shape == [1, 4, 4] and d.info.classes == ["0", "1"]
    assert (len(d.train), len(d.test)) == (40, 10)


def test_npz_rgba_drops_alpha(tmp_path):
    imgs = np.full((4, 2, 2, 4), 7, dtype=np.uint8)
    imgs[..., 3] = 99
    write_npz(tmp_path, images=imgs, labels=np.array([0, 1, 0, 1]))
    d = load_data(data_cfg(name="npz", dir=tmp_path))
    assert d.info.shape == [3, 2, 2] and int(d.train.x.max()) == 7


MALFORMED = {
    "missing key": (dict(images=np.zeros((4, 3, 3), np.uint8)), r"has no 'labels' array \(it has: images\)"),
    "float images": (dict(images=np.zeros((4, 3, 3), np.float32), labels=np.zeros(4, int)), "must be uint8"),
    "wrong label count": (dict(images=np.zeros((4, 3, 3), np.uint8), labels=np.zeros(3, int)),
                          "one integer per image.*for 4 images"),
    "float labels": (dict(images=np.zeros((4, 3, 3), np.uint8), labels=np.zeros(4)), "labels must be integers"),
    "negative labels": (dict(images=np.zeros((4, 3, 3), np.uint8), labels=-np.ones(4, int)), ">= 0"),
    "bad shape": (dict(images=np.zeros((4, 3, 3, 5), np.uint8), labels=np.zeros(4, int)), "NHWC"),
    "too few class names": (dict(images=np.zeros((4, 3, 3), np.uint8), labels=np.arange(4),
                                 classes=np.array(["a", "b"])), "a label is 3 but only 2 classes"),
    "pickled objects": (dict(images=np.array([object()] * 4), labels=np.zeros(4, int)), "not a readable npz"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_npz_gives_one_line_data_error(tmp_path, case):
    arrays, pattern = MALFORMED[case]
    write_npz(tmp_path, **arrays)
    with pytest.raises(DataError, match=pattern) as e:
        load_data(data_cfg(name="npz", dir=tmp_path))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("content", [b"hello, not a zip file", b"", b"PK\x03\x04truncated"])
def test_not_a_zip_file(tmp_path, content):
    (tmp_path / "train.npz").write_bytes(content)
    with pytest.raises(DataError, match="not a readable npz file") as e:
        load_data(data_cfg(name="npz", dir=tmp_path))
    assert "\n" not in str(e.value) and "pickle" not in str(e.value)


def test_npz_missing_files_and_mismatched_splits(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(data_cfg(name="npz", dir=tmp_path / "nope"))
    with pytest.raises(DataError, match="no train.npz"):
        load_data(data_cfg(name="npz", dir=tmp_path))
    write_npz(tmp_path, images=np.zeros((4, 3, 3), np.uint8), labels=np.zeros(4, int))
    write_npz(tmp_path, "test", images=np.zeros((4, 5, 5), np.uint8), labels=np.zeros(4, int))
    with pytest.raises(DataError, match="both splits need one image shape"):
        load_data(data_cfg(name="npz", dir=tmp_path))


# ---- MNIST layout (made-up IDX files, then the staged real data) ------------------------------------------

def write_idx(path, array: np.ndarray, truncate=0):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(data[:len(data) - truncate])


def make_mnist(root, n=12, truncate=0):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), truncate)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_mnist_layout_is_read(tmp_path):
    make_mnist(tmp_path)
    d = load_data(data_cfg(name="mnist", dir=tmp_path))
    assert d.info.shape == [1, 28, 28] and len(d.train) == 12 and len(d.test) == 12
    assert d.train.y.tolist() == [i % 10 for i in range(12)]


def test_mnist_missing_or_truncated(tmp_path):
    with pytest.raises(DataError, match="MNIST not found in .* --download"):
        load_data(data_cfg(name="mnist", dir=tmp_path))
    make_mnist(tmp_path, truncate=5)
    with pytest.raises(DataError, match="truncated"):
        load_data(data_cfg(name="mnist", dir=tmp_path))


def test_mnist_download_fetches_only_what_is_missing(tmp_path, monkeypatch):
    """--download hands the folder to torchvision's downloader when the files are missing (stood in for here: no
    network), then reads what it wrote; with the files present it never calls it."""
    calls = []

    class FakeMNIST:   # torchvision.datasets.MNIST(root, train=True, download=True) writes root/MNIST/raw/*.gz
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            make_mnist(tmp_path)

    monkeypatch.setattr("torchvision.datasets.MNIST", FakeMNIST)
    d = load_data(data_cfg(name="mnist", dir=tmp_path, download=True))
    assert calls == [(str(tmp_path), True, True)] and len(d.train) == 12
    load_data(data_cfg(name="mnist", dir=tmp_path, download=True))
    assert len(calls) == 1


def test_a_failed_download_names_the_fix(tmp_path, monkeypatch):
    """Offline, torchvision raises RuntimeError (MNIST, one line per mirror) or URLError (CIFAR-10): one line."""
    import urllib.error

    class Offline:
        def __init__(self, root, train, download):
            if "MNIST" in type(self).__name__:
                raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
                                   "<urlopen error no network>\n")
            raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("torchvision.datasets.MNIST", type("OfflineMNIST", (Offline,), {}))
    monkeypatch.setattr("torchvision.datasets.CIFAR10", type("OfflineCIFAR", (Offline,), {}))
    with pytest.raises(DataError, match=r"downloading MNIST into .*MNIST/raw failed \(RuntimeError: <urlopen error "
                                        r"no network>\); check the network connection"):
        load_data(data_cfg(name="mnist", dir=tmp_path, download=True))
    with pytest.raises(DataError, match=r"downloading CIFAR10 into .*cifar-10-batches-py failed \(URLError: .*Name or "
                                        r"service not known.*\); check the network"):
        load_data(data_cfg(name="cifar10", dir=tmp_path, download=True))


# ---- CIFAR in torchvision's pickled layout (made-up batches; torchvision's md5 checks patched out) --------

def write_pickle(path, obj):
    import pickle
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def make_cifar(root, folder, files, label_key, meta_file, meta_key, classes, per_file=3):
    """Each file as torchvision reads it: rows of 3,072 bytes, the red plane, then green, then blue."""
    rng = np.random.default_rng(0)
    (root / folder).mkdir(parents=True)
    rows = {}
    for i, name in enumerate(files):
        rows[name] = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        write_pickle(root / folder / name, {"data": rows[name], label_key: [(i + j) % len(classes)
                                                                           for j in range(per_file)]})
    write_pickle(root / folder / meta_file, {meta_key: classes})
    return rows


def test_cifar10_pickled_layout_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    rows = make_cifar(tmp_path, "cifar-10-batches-py", files, "labels", "batches.meta", "label_names", names)
    d = load_data(data_cfg(name="cifar10", dir=tmp_path))
    assert d.train.x.shape == (15, 3, 32, 32) and d.test.x.shape == (3, 3, 32, 32) and d.info.classes == names
    assert torch.equal(d.train.x[0], torch.from_numpy(rows["data_batch_1"][0].reshape(3, 32, 32)))   # planes = channels
    assert torch.equal(d.test.x[2], torch.from_numpy(rows["test_batch"][2].reshape(3, 32, 32)))
    assert d.train.y[:6].tolist() == [0, 1, 2, 1, 2, 3] and d.test.y.tolist() == [5, 6, 7]


def test_cifar100_pickled_layout_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    names = [f"class{i}" for i in range(100)]
    rows = make_cifar(tmp_path, "cifar-100-python", ["train", "test"], "fine_labels", "meta", "fine_label_names",
                      names, per_file=4)
    d = load_data(data_cfg(name="cifar100", dir=tmp_path))
    assert d.train.x.shape == (4, 3, 32, 32) and d.info.classes == names and d.test.y.tolist() == [1, 2, 3, 4]
    assert torch.equal(d.train.x[3], torch.from_numpy(rows["train"][3].reshape(3, 32, 32)))


def test_cifar_missing_or_corrupt_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="CIFAR10 not found in .*cifar-10-batches-py.* --download"):
        load_data(data_cfg(name="cifar10", dir=tmp_path))
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not a pickle")   # md5 checks stay on
    with pytest.raises(DataError, match="CIFAR10 in .* is unusable .*download it again with --download"):
        load_data(data_cfg(name="cifar10", dir=tmp_path))


@pytest.mark.slow
def test_staged_mnist(mnist_dir):
    d = load_data(data_cfg(name="mnist", dir=mnist_dir))
    assert d.train.x.shape == (60000, 1, 28, 28) and d.test.x.shape == (10000, 1, 28, 28)
    assert d.train.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(d.test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.slow
def test_staged_mnist_slice_trains(mnist_dir, quiet, tmp_path):
    d = load_data(data_cfg(name="mnist", dir=mnist_dir))
    train = (d.train.x[:3000, 0], d.train.y[:3000])     # uint8 NHW, as a user would pass them
    test = (d.test.x[:1000, 0], d.test.y[:1000])
    run = nettrain.fit(data=train, val_data=test, model="mlp", epochs=2, precision="32",
                       run_dir=tmp_path / "run", **quiet)
    assert run.test["examples"] == 1000 and run.test["acc"] >= 0.85


@pytest.mark.slow
def test_staged_fashion_mnist():
    from conftest import DATA_DIR, staged
    staged("FashionMNIST", "raw", "t10k-images-idx3-ubyte.gz")
    d = load_data(data_cfg(name="fashion-mnist", dir=DATA_DIR))
    assert d.train.x.shape == (60000, 1, 28, 28) and d.info.classes[9] == "Ankle boot"
    assert d.train.y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


@pytest.mark.slow
def test_staged_cifar10(cifar_dir):
    d = load_data(data_cfg(name="cifar10", dir=cifar_dir))
    assert d.train.x.shape == (50000, 3, 32, 32) and d.test.x.shape == (10000, 3, 32, 32)
    assert d.info.classes[:3] == ["airplane", "automobile", "bird"]
    assert d.train.y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]   # frog, truck, truck, deer, ...


# ---- the user's arrays -------------------------------------------------------------------------------------

def test_user_images_nhwc_become_nchw():
    x = np.random.default_rng(0).integers(0, 256, (10, 5, 5, 3), dtype=np.uint8)
    y = np.arange(10) % 2
    d = from_user_data((x, y), (x[:4], y[:4]), cfg=DataConfig())
    assert d.info.kind == "image" and d.info.shape == [3, 5, 5] and d.info.classes == ["0", "1"]
    assert torch.equal(d.train.x, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert torch.equal(d.test.x, torch.from_numpy(x[:4]).permute(0, 3, 1, 2))
    held_out = from_user_data((x, y), cfg=DataConfig())   # no val_data: 20% held out
    assert (len(held_out.train), len(held_out.test)) == (8, 2)


def test_totensor_floats_are_taken_as_the_images_they_were():
    """A tutorial's Dataset with ToTensor() yields (C, H, W) floats in [0, 1]: they become the uint8 images nettrain
    keeps (bit-exact for 8-bit pixels), so normalization, augmentation and predict treat them as images."""
    pixels = torch.randint(0, 256, (30, 1, 8, 8), dtype=torch.uint8)

    class ToTensorDataset(torch.utils.data.Dataset):
        def __len__(self):
            return 30

        def __getitem__(self, i):
            return pixels[i].float() / 255, i % 3

    d = from_user_data(ToTensorDataset(), (pixels[:6].float() / 255, torch.arange(6) % 3), cfg=DataConfig())
    assert d.info.kind == "image" and d.info.shape == [1, 8, 8]
    assert torch.equal(d.train.x, pixels) and torch.equal(d.test.x, pixels[:6])
    out_of_range = from_user_data((pixels.float(), torch.arange(30) % 3), cfg=DataConfig())   # 0-255 floats
    assert out_of_range.info.kind == "vector"   # not [0, 1]: left as the numbers they are
    with pytest.raises(DataError, match="val_data's inputs are torch.float32 but data's are torch.uint8"):
        from_user_data((pixels, torch.arange(30) % 3), (pixels[:4].float(), torch.arange(4)), cfg=DataConfig())


def test_user_data_that_is_not_numbers_or_has_several_labels_each():
    with pytest.raises(DataError, match="data: cannot make tensors of the inputs and targets"):
        from_user_data(("abc", [1]), cfg=DataConfig())
    with pytest.raises(DataError, match="integer targets are class labels, one per input, but they have shape"):
        from_user_data((np.zeros((10, 8, 8), np.uint8), np.zeros((10, 2), int)), cfg=DataConfig())


def test_empty_splits_are_named_not_trained_on():
    x, y = np.zeros((10, 8, 8), np.uint8), np.arange(10) % 2
    with pytest.raises(DataError, match="the training split is empty"):
        from_user_data((x[:0], y[:0]), cfg=DataConfig())
    with pytest.raises(DataError, match="the validation split is empty; give it at least one example, or leave it out"):
        from_user_data((x, y), (x[:0], y[:0]), cfg=DataConfig())
    with pytest.raises(DataError, match="no training examples are left after holding 1 out for validation"):
        from_user_data((x[:1], y[:1]), cfg=DataConfig())
    assert len(from_user_data((x[:2], y[:2]), cfg=DataConfig()).train) == 1   # two are enough


def test_empty_npz_is_named(tmp_path):
    write_npz(tmp_path, images=np.zeros((0, 8, 8), np.uint8), labels=np.zeros(0, int))
    with pytest.raises(DataError, match="train.npz holds no examples"):
        load_data(data_cfg(name="npz", dir=tmp_path))


def test_user_vectors_and_regression_targets():
    x = torch.linspace(-1, 1, 10).unsqueeze(1)
    d = from_user_data((x, x.pow(2).squeeze(1)), (x, x.pow(2)), cfg=DataConfig())
    assert d.info.kind == "vector" and d.info.task == "regression" and d.info.outputs == 1
    assert d.train.y.shape == (10, 1) and d.test.y.shape == (10, 1) and d.train.x.dtype == torch.float32


def test_user_data_errors():
    with pytest.raises(DataError, match="3 inputs but 2 targets"):
        from_user_data((torch.zeros(3, 2), torch.zeros(2, dtype=torch.long)), cfg=DataConfig())
    with pytest.raises(DataError, match=r"\(inputs, targets\)"):
        from_user_data(torch.zeros(3, 2), cfg=DataConfig())


def test_user_labels_are_checked_against_the_classes():
    x, y = torch.randn(30, 2), torch.arange(30) % 3
    with pytest.raises(DataError, match="a label is 2 but only 2 classes are named"):
        from_user_data((x, y), classes=["a", "b"], cfg=DataConfig())
    with pytest.raises(DataError, match="class indices .* found -1"):
        from_user_data((x, y - 1), cfg=DataConfig())
    d = from_user_data((x, y % 2), (x, y), cfg=DataConfig())   # a class seen only in val still gets an output
    assert d.info.classes == ["0", "1", "2"] and d.info.outputs == 3


def test_user_torch_dataset():
    ds = torch.utils.data.TensorDataset(torch.randn(20, 3), torch.arange(20) % 2)
    d = from_user_data(ds, ds, cfg=DataConfig())
    assert d.info.shape == [3] and len(d.train) == 20 and len(d.test) == 20


def test_images_from_numpy_copies_read_only_buffers():
    buf = np.frombuffer(bytes(range(16)), dtype=np.uint8).reshape(1, 4, 4)
    data = images_from_numpy(buf, np.array([0]), "x")
    assert data.x.shape == (1, 1, 4, 4) and data.x.flatten().tolist() == list(range(16))


# ---- augmentation: shapes and pixel values preserved ----------------------------------------------------------

images = st.tuples(st.integers(1, 5), st.sampled_from([1, 3]), st.integers(1, 9), st.integers(1, 9),
                   st.integers(0, 2**31 - 1))


def _batch(n, c, h, w, seed):
    return torch.randint(0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@settings(max_examples=60, deadline=None)
@given(images, st.integers(0, 4))
def test_random_crop_is_a_shift_of_each_image(shape, padding):
    x = _batch(*shape)
    out = random_crop(x, padding, torch.Generator().manual_seed(shape[-1]))
    assert out.shape == x.shape and out.dtype == torch.uint8
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    for i in range(n):   # each output is the padded image cropped at some offset within the padding
        assert any(torch.equal(out[i], padded[i, :, dy:dy + h, dx:dx + w])
                   for dy in range(2 * padding + 1) for dx in range(2 * padding + 1))


@settings(max_examples=60, deadline=None)
@given(images)
def test_random_flip_mirrors_some_images_and_keeps_the_rest(shape):
    x = _batch(*shape)
    out = random_flip(x, torch.Generator().manual_seed(shape[-1]))
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(len(x)):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(2))


def test_augmentation_is_seeded_and_does_both_things():
    x = _batch(256, 3, 8, 8, 0)
    a = random_flip(random_crop(x, 2, torch.Generator().manual_seed(1)), torch.Generator().manual_seed(2))
    b = random_flip(random_crop(x, 2, torch.Generator().manual_seed(1)), torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    flipped = sum(not torch.equal(o, i) for o, i in zip(random_flip(x, torch.Generator().manual_seed(3)), x))
    assert 80 < flipped < 176   # about half
    shifted = sum(not torch.equal(o, i) for o, i in zip(random_crop(x, 2, torch.Generator().manual_seed(3)), x))
    assert shifted > 200        # 24 of 25 offsets move the image


# ---- batches: every example exactly once, order from (seed, epoch) -----------------------------------------

def vector_info():
    return DataInfo(kind="vector", shape=[1])


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 60), st.integers(1, 17), st.booleans(), st.booleans(), st.integers(0, 5), st.integers(1, 4))
def test_batches_cover_every_example_once(n, batch_size, shuffle, drop_last, epoch, world_size):
    data = ArrayData(torch.arange(n).float().unsqueeze(1), torch.arange(n))
    shards = []
    for rank in range(world_size):
        b = InMemoryBatches(data, BatchPrep(vector_info(), "cpu"), batch_size, train=True, shuffle=shuffle,
                            drop_last=drop_last, seed=3, rank=rank, world_size=world_size)
        b.set_epoch(epoch)
        got = [(x, y) for x, y in b]
        assert len(got) == len(b)
        assert all(len(y) == batch_size for _, y in got[:-1]) and all(0 < len(y) <= batch_size for _, y in got)
        if drop_last:
            assert all(len(y) == batch_size for _, y in got)
        ys = torch.cat([y for _, y in got]) if got else torch.zeros(0, dtype=torch.long)
        assert all(torch.equal(x.squeeze(1).long(), y) for x, y in got)   # inputs stay paired with targets
        shards.append(ys)
    seen = torch.cat(shards)
    assert len(set(seen.tolist())) == len(seen)   # no example twice
    # each rank's share of the full global batches (batch_size x world_size), and of the last, partial one unless
    # drop_last as much as divides evenly among the ranks
    full, rest = divmod(n, batch_size * world_size)
    expected = full * batch_size * world_size + (0 if drop_last else rest // world_size * world_size)
    assert len(seen) == expected
    if world_size == 1 and not drop_last:
        assert sorted(seen.tolist()) == list(range(n))   # every example exactly once


def test_batch_order_depends_on_seed_and_epoch_only():
    data = ArrayData(torch.zeros(100, 1), torch.arange(100))

    def order(seed, epoch):
        b = InMemoryBatches(data, BatchPrep(vector_info(), "cpu"), 10, train=True, shuffle=True, seed=seed)
        b.set_epoch(epoch)
        return torch.cat([y for _, y in b])

    assert torch.equal(order(0, 1), order(0, 1))
    assert not torch.equal(order(0, 1), order(0, 2)) and not torch.equal(order(0, 1), order(1, 1))
    expected = torch.randperm(100, generator=torch.Generator().manual_seed(5 * 1_000_003 + 3))
    assert torch.equal(order(5, 3), expected)   # the documented order (the parity test relies on it)
    unshuffled = InMemoryBatches(data, BatchPrep(vector_info(), "cpu"), 10, train=True, shuffle=False)
    assert torch.equal(torch.cat([y for _, y in unshuffled]), torch.arange(100))


def test_image_batches_are_normalized_float():
    x = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8)
    info = DataInfo(kind="image", shape=[3, 4, 4], mean=[0.1, 0.5, 0.9], std=[0.2, 0.3, 0.4])
    (xb, yb), = make_batches(ArrayData(x, torch.arange(8)), info, DataConfig(), "cpu", 8, train=False)
    expected = (x.float() / 255 - torch.tensor(info.mean).view(1, 3, 1, 1)) / torch.tensor(info.std).view(1, 3, 1, 1)
    assert xb.dtype == torch.float32 and torch.allclose(xb, expected, atol=1e-5)
    assert xb.is_contiguous(memory_format=torch.channels_last)
    (raw, _), = make_batches(ArrayData(x, torch.arange(8)), info, data_cfg(normalize=False), "cpu", 8, train=False)
    assert torch.allclose(raw, x.float() / 255, atol=1e-6)


@pytest.mark.parametrize("augment", [{}, {"flip": True, "crop_padding": 2}, {"flip": True, "alternate_flip": True}])
@pytest.mark.parametrize("channels_last", [True, False])
def test_batches_do_not_depend_on_how_the_pixels_are_stored(augment, channels_last):
    """NHWC pixels are kept as they are (a channels_last view, no copy) and the batches equal, bit for bit, those
    of the same images stored NCHW: the per-pixel statistics and the NHWC gathers only change the speed."""
    nhwc = np.random.default_rng(0).integers(0, 256, (90, 5, 6, 3), dtype=np.uint8)
    stored = images_from_numpy(nhwc, np.arange(90) % 4, "test")
    assert stored.x.data_ptr() == nhwc.ctypes.data and stored.x.is_contiguous(memory_format=torch.channels_last)
    nchw = ArrayData(stored.x.contiguous(), stored.y)
    info = DataInfo(kind="image", shape=[3, 5, 6], mean=[0.2, 0.4, 0.6], std=[0.3, 0.2, 0.25])
    cfg = data_cfg(**augment)

    def batches(data):
        b = make_batches(data, info, cfg, "cpu", 16, train=True, shuffle=True, seed=1, channels_last=channels_last)
        b.set_epoch(3)
        return b, list(b)

    fast, a = batches(stored)
    _, b = batches(nchw)
    assert (fast.x.data_ptr() == nhwc.ctypes.data) == channels_last   # the model's layout: stored without a copy
    assert len(a) == len(b) == 6
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        assert xa.is_contiguous(memory_format=layout) and xb.is_contiguous(memory_format=layout)
    expected = (stored.x[epoch_order(3)].float() - torch.tensor(info.mean).view(1, 3, 1, 1) * 255) * \
        (1 / (torch.tensor(info.std) * 255)).view(1, 3, 1, 1)
    if not augment:   # the documented arithmetic, exactly (the parity test relies on it)
        assert torch.equal(torch.cat([x for x, _ in a]), expected)


@pytest.mark.parametrize("augment", [{}, {"flip": True}, {"flip": True, "alternate_flip": True}])
@pytest.mark.parametrize("channels_last", [True, False])
def test_batches_stored_rounded_are_the_float_batches_rounded(augment, channels_last, monkeypatch):
    """With input_dtype, the images are normalized and rounded once up front; every batch (order, flips, layout)
    is then exactly the float32 batch rounded, which is what autocast would have handed the first layer."""
    monkeypatch.setattr("nettrain.data.batches.ROUNDED_MIN_BATCH", 1)   # these batches count as large
    x = torch.randint(0, 256, (90, 3, 5, 6), dtype=torch.uint8)
    data = ArrayData(x, torch.arange(90) % 4)
    info = DataInfo(kind="image", shape=[3, 5, 6], mean=[0.2, 0.4, 0.6], std=[0.3, 0.2, 0.25])

    def batches(input_dtype):
        b = make_batches(data, info, data_cfg(**augment), "cpu", 16, train=True, shuffle=True, seed=1,
                         channels_last=channels_last, input_dtype=input_dtype)
        b.set_epoch(3)
        return b, list(b)

    rounded, a = batches(torch.bfloat16)
    _, b = batches(None)
    assert rounded.x.dtype == torch.bfloat16 and data.x.dtype == torch.uint8   # the user's pixels are untouched
    assert rounded.per_chunk == 1   # gathered a batch at a time (see InMemoryBatches)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.dtype == torch.bfloat16 and xb.dtype == torch.float32
        assert torch.equal(xa, xb.to(torch.bfloat16)) and torch.equal(ya, yb)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        assert xa.is_contiguous(memory_format=layout)


def test_batches_stay_uint8_for_small_batches_under_a_crop_or_when_too_large(monkeypatch):
    """Small batches keep the float path and its chunks (see InMemoryBatches); the crop pads with uint8 zeros,
    which rounded storage would not reproduce; past ROUNDED_MAX_BYTES the copy costs more memory than it is
    worth."""
    data = ArrayData(torch.randint(0, 256, (20, 1, 6, 6), dtype=torch.uint8), torch.arange(20))
    info = DataInfo(kind="image", shape=[1, 6, 6], mean=[0.5], std=[0.25])

    def stored(cfg, train=True):
        return make_batches(data, info, cfg, "cpu", 8, train=train, input_dtype=torch.bfloat16).x.dtype

    assert stored(DataConfig()) == torch.uint8              # 8 x 36 float32 values: a small batch
    monkeypatch.setattr("nettrain.data.batches.ROUNDED_MIN_BATCH", 8 * 36 * 4)   # now large enough
    assert stored(DataConfig()) == torch.bfloat16
    assert stored(data_cfg(crop_padding=1)) == torch.uint8
    assert stored(data_cfg(crop_padding=1), train=False) == torch.bfloat16   # evaluation never crops
    monkeypatch.setattr("nettrain.data.batches.ROUNDED_MAX_BYTES", 20 * 36 * 2 - 1)
    assert stored(DataConfig()) == torch.uint8


def epoch_order(epoch, seed=1, n=90):
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def test_training_batches_are_augmented_only_when_asked():
    x = torch.randint(0, 256, (64, 1, 6, 6), dtype=torch.uint8)
    info = DataInfo(kind="image", shape=[1, 6, 6], mean=[0.0], std=[1.0])

    def first(cfg, train):
        return next(iter(make_batches(ArrayData(x, torch.arange(64)), info, cfg, "cpu", 64, train=train)))[0]

    plain = first(DataConfig(), True)
    assert torch.allclose(plain, x.float() / 255)
    aug_cfg = data_cfg(flip=True, crop_padding=1)
    assert not torch.allclose(first(aug_cfg, True), plain)
    assert torch.allclose(first(aug_cfg, False), plain)   # never at evaluation


def test_split_sizes_and_errors():
    data = ArrayData(torch.zeros(10, 1), torch.arange(10))
    rest, out = split(data, 0.3, 0)
    assert len(rest) == 7 and len(out) == 3 and not set(rest.y.tolist()) & set(out.y.tolist())
    with pytest.raises(DataError, match="between 0 and 1"):
        split(data, 1.5, 0)
