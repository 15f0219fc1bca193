"""Parity: nettrain trains exactly like the tutorial's hand-written loop (fp32, CPU, same seed, same batches)."""
import numpy as np
import pytest
import torch
from torch import nn

import nettrain

SEED, EPOCHS, BATCH, LR = 5, 2, 16, 0.05


def dataset(n=88, seed=0):
    """Small uint8 NHWC colour images (88 is not a multiple of the batch size: the last batch is short)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 140, (n, 8, 8, 3)) + 50 * y[:, None, None, None]
    return x.astype(np.uint8), y


def tudui_by_hand():
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, 1, 2), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 5, 1, 2), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, 1, 2), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64, 64), nn.Linear(64, 3))


def hand_written_loop(x_nhwc, y_np):
    """The tutorial loop. nettrain's documented choices are reproduced: the model is built right after
    torch.manual_seed(seed); epoch e (from 1) visits torch.randperm(n, Generator().manual_seed(seed*1_000_003+e));
    inputs are normalized with the training set's per-channel mean and std, as (x - 255*mean) * (1/(255*std))."""
    x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(y_np).long()
    pixels = x.float().div(255)
    mean = pixels.mean(dim=(0, 2, 3))
    std = pixels.std(dim=(0, 2, 3)).clamp_min(1e-3)
    shift, scale = (mean * 255).view(1, 3, 1, 1), (1 / (std * 255)).view(1, 3, 1, 1)

    torch.manual_seed(SEED)
    model = tudui_by_hand()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    n = len(y)
    for epoch in range(1, EPOCHS + 1):
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SEED * 1_000_003 + epoch))
        for start in range(0, n, BATCH):
            idx = order[start:start + BATCH]
            inputs = (x[idx].float() - shift) * scale
            loss = loss_fn(model(inputs), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


@pytest.mark.parametrize("channels_last", [False, True])
def test_nettrain_matches_the_hand_written_loop(tmp_path, channels_last):
    x, y = dataset()
    reference = hand_written_loop(x, y)
    run = nettrain.fit(data=(x, y), val_data=dataset(24, seed=1), model="tudui", precision="32", epochs=EPOCHS,
                       batch_size=BATCH, seed=SEED, optimizer="sgd", lr=LR, momentum=0.9, device="cpu",
                       scheduler="none",
                       run_dir=tmp_path / "run", **{"train.channels_last": channels_last, "run.progress": "none",
                                                     "run.tensorboard": False, "run.report": False})
    ours = run.model.module.state_dict()
    theirs = reference.state_dict()
    assert list(ours) == list(theirs)
    initial = tudui_by_hand().state_dict()
    assert not torch.equal(initial["0.weight"], theirs["0.weight"])   # it did train
    if channels_last:   # another memory layout may sum in another order: equal to float rounding
        for k in theirs:
            assert torch.allclose(ours[k], theirs[k], rtol=0, atol=1e-6), k
    else:
        for k in theirs:
            assert torch.equal(ours[k], theirs[k]), k
