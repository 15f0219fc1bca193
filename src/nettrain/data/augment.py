"""Whole-batch augmentation on uint8 image tensors: two gathers for the crops, one `where` for the flips.

No per-image Python: a batch of N images costs the same few tensor ops whatever N is. The random numbers
come from the generator passed in, so a seeded epoch is reproduced exactly (resume, parity). Drawing and
applying are separate (`draw`, `apply`) so that several batches can be augmented in one pass with exactly
the numbers each would have drawn on its own: per batch, the crop's row shifts, its column shifts, then
the flip coin.
"""
import torch


def _offsets(n: int, padding: int, generator, device) -> tuple:
    dy = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    return dy, dx


def shift_crop(x: torch.Tensor, padding: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Image i cropped from the zero-padded image at offset (dy[i], dx[i]): rows, then columns, gathered."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None].expand(n, c, h, w + 2 * padding)
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :].expand(n, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to `padding` pixels each way, the gap zero-filled (pad + random crop)."""
    if padding <= 0:
        return x
    return shift_crop(x, padding, *_offsets(len(x), padding, generator, x.device))


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flip = torch.rand(len(x), generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def draw(sizes, crop_padding: int, flip: bool, generator, device, rank: int = 0, world_size: int = 1,
         strided: bool = False) -> dict:
    """The random numbers for consecutive batches of `sizes`, drawn batch by batch as `augment` would. With
    `world_size` > 1 each batch is `rank`'s contiguous slice of a global batch world_size times larger
    (batches.py), or with `strided` its every world_size-th example from the rank-th (DistributedSampler's share,
    shard.py): the global batch's numbers are drawn and the rank's kept, so that an example is augmented alike in
    any number of processes."""
    dys, dxs, flips = [], [], []
    for n in sizes:
        keep = slice(None) if world_size == 1 else slice(rank, None, world_size) if strided else \
            slice(rank * n, (rank + 1) * n)
        if crop_padding:
            dy, dx = _offsets(n * world_size, crop_padding, generator, device)
            dys.append(dy[keep])
            dxs.append(dx[keep])
        if flip:
            flips.append((torch.rand(n * world_size, generator=generator, device=device) < 0.5)[keep])
    return {"dy": torch.cat(dys) if dys else None, "dx": torch.cat(dxs) if dxs else None,
            "flip": torch.cat(flips) if flips else None}


def apply(x: torch.Tensor, crop_padding: int, params: dict) -> torch.Tensor:
    if crop_padding:
        x = shift_crop(x, crop_padding, params["dy"], params["dx"])
    if params["flip"] is not None:
        x = torch.where(params["flip"][:, None, None, None], x.flip(3), x)
    return x


def augment(x: torch.Tensor, crop_padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    return apply(x, crop_padding, draw([len(x)], crop_padding, flip, generator, x.device))
