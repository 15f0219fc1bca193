"""nettrain show: a labelled grid of training samples, as stored or after the training-time augmentation."""
import io

import numpy as np
import pytest
from PIL import Image

from nettrain.api import resolve_config
from nettrain.cli import main
from nettrain.data import load_data
from nettrain.show import samples


def decoded(path) -> Image.Image:
    image = Image.open(io.BytesIO(path.read_bytes()))
    image.load()
    return image


def test_show_writes_a_png_prints_its_path_and_never_replaces_a_file_unasked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["show", "--dataset", "digits", "--n", "16"]) == 0
    out = tmp_path / "show-digits.png"
    assert capsys.readouterr().out.strip() == "show-digits.png"
    image = decoded(out)
    assert image.format == "PNG" and image.width > 400 and image.height > 200
    first = out.read_bytes()
    # a second show (here of 8 samples: another picture) does not replace it
    assert main(["show", "--dataset", "digits", "--n", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "show-digits.png already exists; add --overwrite" in err
    assert out.read_bytes() == first
    assert main(["show", "--dataset", "digits", "--n", "8", "--overwrite"]) == 0
    assert out.read_bytes() != first and decoded(out).height < image.height   # one row of 8, not two


def test_plain_samples_are_stored_training_images_with_their_labels():
    cfg = resolve_config(None, {"dataset": "digits"})
    s = samples(cfg, 16)
    train = load_data(cfg.data).train
    stored = train.x.permute(0, 2, 3, 1).numpy()
    assert s.images.shape == (16, 8, 8, 1) and s.images.dtype == np.uint8 and s.augmentation == ""
    assert s.classes == [str(c) for c in range(10)]
    for image, label in zip(s.images, s.labels):   # each is a training image, pixel for pixel, with its own label
        same = np.flatnonzero((stored == image).all(axis=(1, 2, 3)))
        assert len(same) and label in train.y[same].tolist()
    assert len({im.tobytes() for im in s.images}) > 8   # a shuffled batch, not one image repeated


def crops_and_flips(image: np.ndarray, padding: int) -> set:
    """Every image a shifted crop of the zero-padded image, then maybe a mirror, can give (by hand, with numpy)."""
    h, w, _ = image.shape
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    out = set()
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[dy:dy + h, dx:dx + w]
            out |= {crop.tobytes(), crop[:, ::-1].tobytes()}
    return out


def test_augmented_samples_are_the_same_images_cropped_and_flipped_as_training_does():
    cfg = resolve_config(None, {"dataset": "digits", "data.crop_padding": 2, "data.flip": True})
    plain, augmented = samples(cfg, 32), samples(cfg, 32, augmented=True)
    assert augmented.augmentation == "random crop with 2 px zero padding, random horizontal flip"
    assert (augmented.labels == plain.labels).all()   # the same batch of the same epoch
    for before, after in zip(plain.images, augmented.images):
        assert after.tobytes() in crops_and_flips(before, 2)
    changed = sum(a.tobytes() != b.tobytes() for a, b in zip(plain.images, augmented.images))
    assert changed >= 20   # 25 offsets x 2 mirrors: about 1 in 50 comes back unchanged


def test_augmented_goes_through_the_training_batches_augmentation(monkeypatch):
    import nettrain.data.batches as batches
    calls = []
    real = batches.apply

    def counting(x, crop_padding, params):
        calls.append((len(x), crop_padding))
        return real(x, crop_padding, params)

    monkeypatch.setattr(batches, "apply", counting)
    cfg = resolve_config(None, {"dataset": "digits", "data.crop_padding": 1})
    samples(cfg, 8)
    assert calls == []
    samples(cfg, 8, augmented=True)
    assert calls and calls[0][1] == 1


def test_an_image_folder_is_shown_with_its_folder_names(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name, base in (("cat", 60), ("dog", 190)):
        (tmp_path / "photos" / "train" / name).mkdir(parents=True)
        for i in range(4):
            pixels = np.clip(rng.normal(base, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / "train" / name / f"{i}.png")
    cfg = resolve_config(None, {"dataset": "imagefolder", "data_dir": str(tmp_path / "photos")})
    s = samples(cfg, 64)
    assert s.classes == ["cat", "dog"] and s.images.shape[1:] == (12, 12, 3)
    # all 6 training images (of 8, 20% are held out as the test split), fewer than the 64 asked
    assert sorted(set(s.labels.tolist())) == [0, 1] and len(s.labels) == 6
    # the dark images are the cats: the label travels with its image
    for image, label in zip(s.images, s.labels):
        assert (image.mean() < 125) == (label == 0)
    out = tmp_path / "grid.png"
    assert main(["show", "--dataset", "imagefolder", "--data-dir", str(tmp_path / "photos"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and decoded(out).format == "PNG"


@pytest.mark.parametrize("argv, says", [
    (["--dataset", "iris", "--out", "iris.png"], "dataset 'iris' holds table data, which nettrain show describes "
                                                  "in the terminal: --out and --augmented are for image datasets"),
    (["--dataset", "two-gaussians", "--augmented"], "dataset 'two-gaussians' holds vector data, which nettrain show "
                                                    "describes in the terminal"),
    (["--dataset", "digits", "--augmented"], "--augmented shows the training-time augmentation, but this config has "
                                             "none"),
    (["--dataset", "digits", "--n", "0"], "--n must be between 1 and 256"),
    (["--dataset", "digits", "--out", "grid.jpg"], "must name a .png file"),
])
def test_what_show_cannot_draw_is_one_line(argv, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["show", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nettrain: error: ") and err.count("\n") == 1 and says in err
    assert list(tmp_path.iterdir()) == []   # nothing written


def test_a_text_file_is_described_with_its_first_batch_as_the_model_reads_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # 5 copies of one text (all on one side of the split), texts of 1 to 12 words, a word seen once only in test
    rows = ["good film,pos"] * 5 + [f"{' '.join(['bad'] * k)} ending,neg" for k in range(1, 12)] + \
        [f"great {'fun ' * k}show,pos" for k in range(1, 12)]
    (tmp_path / "t.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    assert main(["show", "--dataset", "text", "--data-dir", "t.csv", "--batch-size", "4", "--n", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("text: 27 texts in t.csv, 4 of them duplicates (23 distinct")
    from nettrain.api import resolve_config
    from nettrain.data import load_data, make_batches
    cfg = resolve_config(None, {"dataset": "text", "data_dir": "t.csv", "batch_size": 4})
    data = load_data(cfg.data)
    y = {"train": data.train.y, "test": data.test.y}
    n = {s: len(t) for s, t in y.items()}
    counts = {s: int((t == 1).sum()) for s, t in y.items()}   # classes: neg 0, pos 1
    assert f"  pos    {counts['train']} ({counts['train'] / n['train']:.1%})  " in "\n".join(out) + " "
    batches = make_batches(data.train, data.info, cfg.data, "cpu", 4, train=True, shuffle=True, seed=cfg.train.seed)
    batches.set_epoch(1)
    (tokens, lengths), labels = next(iter(batches))
    shown = out[-3:]   # the batch's first 3 texts, their words from the vocabulary, under their class
    for line, row, length, label in zip(shown, tokens.tolist(), lengths.tolist(), labels.tolist()):
        assert line.split() == [["neg", "pos"][label]] + [data.info.vocab[i] for i in row[:length]]
    waste = [line for line in out if line.startswith("padding at batch size 4: ")]
    assert len(waste) == 1 and f"{batches.padding_waste():.1%} of the positions" in waste[0]
    assert not list(tmp_path.glob("*.png"))   # printed, nothing written


def test_a_table_is_described_by_its_columns_encoding_and_its_first_rows_as_read(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    lines = [f"{i % 4},{'xy'[i % 4 % 2]},{i % 4 * 1.5}" for i in range(20)] + ["3,,4.5"]   # a missing colour
    (tmp_path / "t.csv").write_text("size,colour,price\n" + "\n".join(lines) + "\n")
    assert main(["show", "--dataset", "csv", "--data-dir", "t.csv", "--target", "price", "--n", "16"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "21 rows: 16 train, 5 test; target column 'price', regression"
    assert any(line.split()[:4] == ["colour", "categorical", "one-hot", "over"] and "(x, y)" in line for line in out)
    rows = [line.split() for line in out[-16:]]   # every training row: price, size, colour, as the CSV has them
    assert all(float(price) == float(size) * 1.5 for price, size, _ in rows)
    assert all(colour == "xy"[int(size) % 2] for _, size, colour in rows if colour != "x" or size != "3")
    assert {size for _, size, _ in rows} <= {"0", "1", "2", "3"}   # 0 reads 0, not the float32 round trip's 1e-8


def test_show_mnist_from_the_staged_files(mnist_dir, tmp_path):
    cfg = resolve_config(None, {"dataset": "mnist", "data_dir": str(mnist_dir), "data.crop_padding": 2})
    s = samples(cfg, 8, augmented=True)
    assert s.images.shape == (8, 28, 28, 1) and s.classes == [str(c) for c in range(10)]
    assert s.augmentation == "random crop with 2 px zero padding"


def test_vectors_are_described_by_their_features_and_first_rows(capsys):
    assert main(["show", "--dataset", "two-gaussians", "--n", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    from nettrain.api import resolve_config
    from nettrain.data import load_data
    cfg = resolve_config(None, {"dataset": "two-gaussians"})
    data = load_data(cfg.data)
    x = data.train.x.double()
    assert out[0] == "two-gaussians: 400 vectors of shape [2] (200 train, 200 test), classification"
    means = [float(v) for v in x.mean(0)]
    assert [float(line.split()[2]) for line in out if line.strip().startswith(("0  mean", "1  mean"))] == \
        pytest.approx(means, rel=1e-3, abs=1e-6)
    from nettrain.kinds.base import first_batch
    inputs, y = first_batch(data, cfg)
    rows = [line.split() for line in out[-5:]]
    assert [r[0] for r in rows] == [str(k) for k in y[:5].tolist()]
    assert [float(v) for r in rows for v in r[1:]] == pytest.approx(inputs[:5].flatten().tolist(), rel=1e-3)


def test_a_validation_split_is_its_own_column(capsys):
    assert main(["show", "--dataset", "two-gaussians", "--data.val_fraction", "0.2", "--n", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "(160 train, 40 val, 200 test)" in out[0] and out[1].split() == ["class", "train", "val", "test"]
