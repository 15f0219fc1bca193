"""Every data path cut into the same global batches at any world size (data/shard.py), in one process: the ranks'
k-th batches together are the one process's k-th batch, and evaluation parts hold every example once. The
2-process fits that prove the losses match are in test_ddp_paths.py."""
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from nettrain.config import DataConfig
from nettrain.data import make_batches
from nettrain.data.arrays import DataInfo
from nettrain.data.batches import BatchPrep, LoaderBatches
from nettrain.data.custom import CustomData
from nettrain.data.text import TextData
from nettrain.errors import ConfigError


class Images(Dataset):
    """uint8 images whose first pixel is their index (to follow each through the batches)."""

    def __init__(self, n):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 256, (n, 1, 6, 6), dtype=torch.uint8, generator=g)
        self.x[:, 0, 0, 0] = torch.arange(n)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], i


def loader_epoch(n, batch, rank, world, epoch=2):
    info = DataInfo(kind="image", shape=[1, 6, 6], mean=[0.0], std=[1.0])
    prep = BatchPrep(info, "cpu", crop_padding=1, flip=True, channels_last=False, normalize=False)
    b = LoaderBatches(Images(n), prep, batch // world, train=True, shuffle=True, seed=4, rank=rank, world_size=world)
    b.set_epoch(epoch)
    got = list(b)
    assert len(got) == len(b) and sum(len(y) for _, y in got) == b.num_samples
    return got


@pytest.mark.parametrize("n, batch, world", [(40, 8, 2), (43, 8, 2), (42, 12, 3)])
def test_loader_path_same_global_batches_and_augmentation(n, batch, world):
    """DistributedSampler at every world size: the one process's k-th batch holds the examples of the ranks' k-th
    batches (the order is the in-memory path's documented one), and each example is cropped and flipped alike."""
    alone = loader_epoch(n, batch, 0, 1)
    first = torch.cat([y for _, y in alone])
    assert torch.equal(first, torch.randperm(n, generator=torch.Generator().manual_seed(4 * 1_000_003 + 2)))
    ranks = [loader_epoch(n, batch, r, world) for r in range(world)]
    assert len({len(r) for r in ranks}) == 1 and len(ranks[0]) == len(alone)
    for k, (x, y) in enumerate(alone):
        xs = torch.cat([r[k][0] for r in ranks])
        ys = torch.cat([r[k][1] for r in ranks])
        assert len(y) - len(ys) == len(y) % world   # the last, partial batch: what does not divide is left out
        if len(y) < batch:   # its numbers are drawn for fewer images than in one process (as in memory)
            continue
        for image, i in zip(xs, ys.tolist()):   # the same augmented image as in one process
            assert torch.equal(image, x[(y == i).nonzero()[0, 0]])


def pairs(n):
    return [(torch.tensor([float(i)]), i) for i in range(n)]


def collate(items):
    xs, ys = zip(*items)
    return (torch.stack(xs),), torch.tensor(ys)   # a tuple input: the custom path


def custom_epoch(data, batch, rank, world, epoch=3):
    b = data.batches("cpu", batch // world, "classification", shuffle=True, seed=2, rank=rank, world_size=world)
    b.set_epoch(epoch)
    return [y for _, y in b]


def test_custom_path_same_global_batches_and_exact_evaluation_parts():
    data = CustomData(pairs(21), collate, "data")
    alone = custom_epoch(data, 6, 0, 1)
    ranks = [custom_epoch(data, 6, r, 2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(alone) == 4
    for k, y in enumerate(alone):
        together = torch.cat([r[k] for r in ranks])
        assert set(together.tolist()) <= set(y.tolist()) and len(y) - len(together) == len(y) % 2
    info = DataInfo(kind="custom", shape=[], task="classification", classes=["a"] * 21, outputs=21)
    parts = [torch.cat([y for _, y in make_batches(data, info, DataConfig(), "cpu", 4, train=False, rank=r,
                                                   world_size=2)]).tolist() for r in range(2)]
    assert parts == [list(range(10)), list(range(10, 21))]   # contiguous, uneven, every item once


def test_a_users_dataloader_without_a_distributed_sampler_is_refused_under_ddp():
    data = CustomData(DataLoader(pairs(8), batch_size=2, shuffle=True, collate_fn=collate), None, "data")
    with pytest.raises(ConfigError, match="RandomSampler gives every one of the 2 processes the same batches") as e:
        data.batches("cpu", 2, "classification", rank=1, world_size=2)
    assert "\n" not in str(e.value)
    assert len(data.batches("cpu", 2, "classification")) == 4   # one process: as it is
    info = DataInfo(kind="custom", shape=[], task="classification", classes=["a"] * 8, outputs=8)
    parts = [torch.cat([y for _, y in make_batches(data, info, DataConfig(), "cpu", 3, train=False, rank=r,
                                                   world_size=2)]).tolist() for r in range(2)]
    assert parts == [[0, 1, 2, 3], [4, 5, 6, 7]]   # evaluated: its dataset cut in two, with its collate function


def texts(n):
    """n texts of lengths 1..9, text i's tokens all i + 1 (ids start at 1: 0 pads)."""
    lengths = torch.tensor([1 + (7 * i) % 9 for i in range(n)])
    ids = torch.cat([torch.full((int(m),), i + 1) for i, m in enumerate(lengths)])
    return TextData(ids, lengths, torch.arange(n))


@pytest.mark.parametrize("n, drop_last", [(50, False), (51, False), (53, True)])
def test_text_path_buckets_the_global_batches_then_shards_them(n, drop_last):
    """Bucketed and shuffled: the plan is the one process's, made for the global batches of 8; rank r's k-th batch
    is the r-th half of the one process's k-th batch, padded to the same width (its very rows)."""
    data = texts(n)

    def epoch(rank, world):
        b = data.batches("cpu", 8 // world, train=True, shuffle=True, drop_last=drop_last, seed=1, bucket=True,
                         rank=rank, world_size=world)
        b.set_epoch(2)
        got = list(b)
        assert len(got) == len(b) and (drop_last or sum(len(y) for _, y in got) == b.num_samples)
        return got

    alone, ranks = epoch(0, 1), [epoch(r, 2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    k = 0
    for (tokens, lengths), y in alone:
        if len(y) < 2:   # a last batch of one text does not divide between two processes: both skip it
            continue
        cut = len(y) // 2
        for r in range(2):
            (rt, rl), ry = ranks[r][k]
            assert torch.equal(ry, y[r * cut:(r + 1) * cut]) and torch.equal(rt, tokens[r * cut:(r + 1) * cut])
            assert torch.equal(rl, lengths[r * cut:(r + 1) * cut])
        k += 1
    assert k == len(ranks[0])


def test_text_evaluation_parts_hold_every_text_once():
    data = texts(13)
    info = DataInfo(kind="text", shape=[14], task="classification", classes=[str(i) for i in range(13)], outputs=13)
    seen = []
    for r in range(2):
        for (tokens, lengths), y in make_batches(data, info, DataConfig(), "cpu", 4, train=False, rank=r,
                                                 world_size=2):
            for t, m, label in zip(tokens, lengths, y):   # each text's own tokens, not another's
                assert t[:m].eq(label + 1).all() and not t[m:].any()
            seen += y.tolist()
    assert sorted(seen) == list(range(13))
