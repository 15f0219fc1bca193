"""The user's data in the tutorials' forms: a Dataset of variable-length sequences with a padding collate_fn, a
ready DataLoader, batches whose input is a tuple or a dict, integer token ids, torchvision's `classes`."""
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import nettrain
from nettrain.data import from_user_data
from nettrain.config import DataConfig
from nettrain.errors import CheckpointError, DataError
from nettrain.runs import read_metrics
from conftest import QUIET_CPU


# ---- seed 002's program, tiny: token sequences of 5-40 ids, label = more 7s than 8s ------------------------------

class Sequences(Dataset):
    """Random token ids 1..99 with a few 7s and 8s planted (their counts differ, so the classes are balanced);
    label 1 when 7 occurs more often than 8."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        while len(self.items) < n:
            ids = torch.randint(1, 100, (int(torch.randint(5, 41, (1,), generator=g)),), generator=g)
            ids[(ids == 7) | (ids == 8)] = 1
            planted = torch.randperm(len(ids), generator=g)[:int(torch.randint(1, 5, (1,), generator=g))]
            ids[planted] = torch.where(torch.rand(len(planted), generator=g) < 0.5, 7, 8)
            sevens, eights = int((ids == 7).sum()), int((ids == 8).sum())
            if sevens != eights:
                self.items.append((ids, int(sevens > eights)))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def pad_collate(batch):
    """Pads each batch to its longest sequence with 0: (ids (B, T) int64, labels (B,))."""
    ids = nn.utils.rnn.pad_sequence([x for x, _ in batch], batch_first=True, padding_value=0)
    return ids, torch.tensor([y for _, y in batch])


class BiLSTM(nn.Module):
    """Embedding, bidirectional LSTM, the mean of its outputs over the real (unpadded) steps, linear to 2 classes."""

    def __init__(self, vocab=100, dim=16, hidden=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 2)

    def forward(self, ids):
        assert ids.dtype == torch.long, ids.dtype   # token ids must arrive as integers
        mask = (ids != 0).unsqueeze(2).float()
        out, _ = self.lstm(self.embed(ids))
        return self.head((out * mask).sum(1) / mask.sum(1).clamp_min(1))


def test_a_variable_length_dataset_trains_through_the_users_collate_and_predicts_raw_items(tmp_path):
    torch.manual_seed(0)
    train, val = Sequences(320, seed=1), Sequences(100, seed=2)
    run = nettrain.fit(model=BiLSTM(), data=train, val_data=val, collate_fn=pad_collate, optimizer="adam", lr=0.02,
                       epochs=3, batch_size=32, scheduler="none", run_dir=tmp_path / "run", **QUIET_CPU)
    assert run.test["acc"] >= 0.7 and run.test["examples"] == 100   # chance is about 0.5
    state = torch.load(run.dir / "best.pt", weights_only=True)        # still plain data
    assert state["data"]["kind"] == "custom" and state["data"]["shape"] == []
    assert state["data"]["collate"].endswith(":pad_collate") and state["data"]["classes"] == ["0", "1"]
    raw = [val[i][0] for i in range(10)]                               # inputs as the Dataset holds them
    pred = run.model.predict(raw)
    assert len(pred) == 10 and set(pred.labels) <= {"0", "1"}
    # the run loads back: its collate function is the user's own, recorded and resolved like the model class
    loaded = nettrain.load(run.dir)
    assert loaded.predict(raw).indices == nettrain.load(run.dir, collate_fn=pad_collate).predict(raw).indices
    assert loaded.evaluate(data=val)["acc"] == pytest.approx(run.metrics[-1]["val_acc"])


def test_a_ragged_dataset_without_a_collate_fn_names_it():
    with pytest.raises(DataError, match=r"the Dataset's items must be .*; give collate_fn= that makes a batch"):
        from_user_data(Sequences(20, seed=0), cfg=DataConfig())


def test_load_of_a_collate_fn_it_cannot_find_again_names_the_fix(tmp_path):
    def local_pad(batch):   # a function in a function: no module:qualname to import it from
        return pad_collate(batch)

    run = nettrain.fit(model=BiLSTM(), data=Sequences(40, seed=3), collate_fn=local_pad, epochs=1,
                       run_dir=tmp_path / "run", **QUIET_CPU)
    with pytest.raises(CheckpointError, match=r"names the collate .*local_pad.*pass it again: nettrain.load\(path, "
                                              r"collate_fn=your_collate\)"):
        nettrain.load(run.dir)
    raw = [Sequences(4, seed=4)[i][0] for i in range(4)]
    assert len(nettrain.load(run.dir, collate_fn=local_pad).predict(raw)) == 4


class Counting(BiLSTM):
    """Records the batch size of each training forward pass (the probe's one, engine/probe.py, then the steps)."""

    def __init__(self):
        super().__init__()
        self.train_batches = []

    def forward(self, ids):
        if self.training and torch.is_grad_enabled():
            self.train_batches.append(len(ids))
        return super().forward(ids)


def test_a_dataloader_as_data_is_used_with_its_own_batch_size(tmp_path, capsys):
    train = Sequences(45, seed=5)
    loader = DataLoader(train, batch_size=7, shuffle=True, collate_fn=pad_collate)
    model = Counting()
    quiet = dict(QUIET_CPU, **{"run.progress": "lines"})
    nettrain.fit(model=model, data=loader, val_data=Sequences(20, seed=6), collate_fn=pad_collate, epochs=2,
                 batch_size=64, run_dir=tmp_path / "run", **quiet)
    steps = model.train_batches[-2 * math.ceil(45 / 7):]   # after the probe's pass on the loader's first batch
    assert steps == [7] * 6 + [3] + [7] * 6 + [3]   # batch_size=64 would have been one step of 45 an epoch
    assert "your DataLoader is used as it is (batch size 7, RandomSampler, collate pad_collate)" in \
        capsys.readouterr().out


class Keywords(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.EmbeddingBag(100, 8, mode="sum")
        self.head = nn.Linear(8, 2)

    def forward(self, *, ids, weights):   # keyword-only: reached only as model(**batch)
        return self.head(self.embed(ids, per_sample_weights=weights))


def dict_collate(batch):
    ids = nn.utils.rnn.pad_sequence([x for x, _ in batch], batch_first=True)
    return {"ids": ids, "weights": (ids != 0).float()}, torch.tensor([y for _, y in batch])


def test_a_dict_batch_goes_in_as_keyword_arguments(tmp_path):
    run = nettrain.fit(model=Keywords(), data=Sequences(40, seed=7), collate_fn=dict_collate, epochs=1,
                       run_dir=tmp_path / "run", **QUIET_CPU)
    assert run.test["examples"] == 8 and len(run.model.predict([torch.tensor([7, 7, 3])])) == 1


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, ids, lengths):
        assert lengths.dtype == torch.long
        return self.head(self.embed(ids).sum(1) / lengths.unsqueeze(1))


def tuple_collate(batch):
    ids, labels = pad_collate(batch)
    return (ids, torch.tensor([len(x) for x, _ in batch])), labels


def test_a_tuple_batch_goes_in_as_positional_arguments(tmp_path):
    run = nettrain.fit(model=Pair(), data=Sequences(40, seed=8), collate_fn=tuple_collate, epochs=1,
                       run_dir=tmp_path / "run", **QUIET_CPU)
    assert run.test["examples"] == 8


class Ids(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, ids):
        assert ids.dtype == torch.long, ids.dtype
        return self.head(self.embed(ids).mean(1))


def test_pre_padded_token_ids_stay_integers(tmp_path):
    x = torch.randint(0, 100, (60, 12))
    y = torch.randint(0, 3, (60,))
    run = nettrain.fit(model=Ids(), data=(x, y), epochs=1, run_dir=tmp_path / "run", **QUIET_CPU)
    assert run.model.info.dtype == "int64"
    assert run.model.predict(x[:5].numpy()).probs.shape == (5, 3)   # numpy ids too, as integers
    with pytest.raises(DataError, match="takes integer token ids shaped \\(N, 12\\), got torch.float32"):
        run.model.predict(x[:5].float())
    loaded = nettrain.load(run.dir, model=Ids())
    assert torch.equal(loaded.predict(x[:5]).probs, run.model.predict(x[:5]).probs)


class Labelled(Dataset):
    """A torchvision-style Dataset: its `classes` names the labels."""
    classes = ["cat", "dog", "bird"]

    def __init__(self, n=30):
        self.x, self.y = torch.randn(n, 4), torch.arange(n) % 3

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def test_a_torchvision_datasets_classes_become_the_class_names():
    assert from_user_data(Labelled(), cfg=DataConfig()).info.classes == ["cat", "dog", "bird"]
    loader = DataLoader(torch.utils.data.Subset(Labelled(), range(20)), batch_size=4)   # followed through both
    assert from_user_data(loader, cfg=DataConfig()).info.classes == ["cat", "dog", "bird"]


class Epochs(DistributedSampler):
    """A seeded DistributedSampler that records the epochs it is set to."""

    def __init__(self, dataset):
        super().__init__(dataset, num_replicas=1, rank=0, shuffle=True, seed=3)
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)
        super().set_epoch(epoch)


def test_resume_with_a_users_dataloader_sets_its_samplers_epoch_and_is_exact(tmp_path):
    train, val = Sequences(40, seed=9), Sequences(20, seed=10)
    options = dict(val_data=val, optimizer="adam", lr=0.01, scheduler="none", batch_size=64, seed=1, **QUIET_CPU)

    def loader():
        return DataLoader(train, batch_size=8, sampler=Epochs(train), collate_fn=pad_collate)

    torch.manual_seed(0)
    whole = loader()
    nettrain.fit(model=BiLSTM(), data=whole, epochs=3, run_dir=tmp_path / "whole", **options)
    assert whole.sampler.epochs == [1, 2, 3]
    torch.manual_seed(0)
    nettrain.fit(model=BiLSTM(), data=loader(), epochs=2, run_dir=tmp_path / "part", **options)
    resumed = loader()
    nettrain.fit(resume=tmp_path / "part", model=BiLSTM(), data=resumed, epochs=3, **options)
    assert resumed.sampler.epochs == [3]
    columns = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")   # not the timings
    rows = [[{k: row[k] for k in columns} for row in read_metrics(tmp_path / d / "metrics.csv")]
            for d in ("whole", "part")]
    assert len(rows[0]) == 3 and rows[1] == rows[0]   # every epoch, the resumed one too, as uninterrupted


class Lengths(Dataset):
    """Sequences with a float target: their length / 10 (regression)."""

    def __init__(self, n=40):
        self.items = [(torch.arange(1, 3 + i % 9), (2 + i % 9) / 10) for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class Regressor(BiLSTM):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(32, 1)


def float_collate(batch):
    ids, _ = pad_collate([(x, 0) for x, _ in batch])
    return ids, torch.tensor([y for _, y in batch], dtype=torch.float64)


def test_float_targets_through_a_collate_fn_are_regression(tmp_path):
    run = nettrain.fit(model=Regressor(), data=Lengths(), collate_fn=float_collate, epochs=2, run_dir=tmp_path / "r",
                       **QUIET_CPU)
    assert run.model.info.task == "regression" and run.model.info.outputs == 1 and "mse" in run.test
    assert run.model.predict([torch.tensor([1, 2, 3])]).values.shape == (1, 1)


def test_augmenting_flags_are_refused_for_a_dataset_with_a_collate_fn(tmp_path):
    with pytest.raises(nettrain.NettrainError, match="data.crop_padding and data.flip augment in-memory images"):
        nettrain.fit(model=BiLSTM(), data=Sequences(20, seed=0), collate_fn=pad_collate, **{"data.flip": True},
                     run_dir=tmp_path / "r", **QUIET_CPU)
    assert not (tmp_path / "r").exists()


def test_a_model_trained_on_arrays_refuses_a_dataloader_to_evaluate_on(tmp_path):
    x, y = torch.randn(30, 4), torch.arange(30) % 2
    run = nettrain.fit(model=nn.Linear(4, 2), data=(x, y), epochs=1, run_dir=tmp_path / "r", **QUIET_CPU)
    with pytest.raises(DataError, match="trained on vectors held in memory; evaluate it on data=\\(x, y\\)"):
        run.model.evaluate(data=DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=5))
    assert run.model.evaluate(data=(x, y))["examples"] == 30
