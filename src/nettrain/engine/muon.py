"""Muon for conv filters and hidden matrices, Nesterov SGD for everything else, in one torch optimizer.

Muon (Keller Jordan, 2024) replaces a matrix's momentum update by the nearest semi-orthogonal matrix, found with
a few Newton-Schulz iterations: every direction of the update gets the same size. Conv filters are treated as
matrices of shape (out_channels, in_channels x kh x kw), as airbench94_muon does. Vectors (biases, norm shifts)
and the output layer (the model's last matrix, which maps features to classes) keep plain SGD: torch.optim.sgd's own
functional step (coupled weight decay, dampening 0).

torch.optim.Muon takes only 2-D parameters and no others, hence this class. One optimizer (not two) keeps the
loop, the schedules (which scale every group's lr by the same factor) and the checkpoints unchanged.
"""
from __future__ import annotations

import math

import torch
from torch.optim.sgd import sgd as sgd_step   # torch.optim.SGD's own functional update

# The quintic iteration's coefficients from the Muon write-up: steep at zero, so a few steps bring every singular
# value of the normalized update into roughly [0.7, 1.2], which trains as well as the exact orthogonal factor.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: torch.Tensor, steps: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """The approximate orthogonal factor U V^T of g (viewed as rows x everything else), in g's shape and dtype."""
    a, b, c = NS_COEFFICIENTS
    x = g.reshape(len(g), -1).to(dtype)
    x = x / (x.norm() + 1e-7)   # top singular value <= 1, where the iteration converges
    wide = x.size(0) <= x.size(1)
    if not wide:                # iterate on the smaller Gram matrix
        x = x.T
    for _ in range(steps):   # x <- a x + (b s + c s^2) x with s = x x^T, as three fused matmuls
        s = x @ x.T
        x = torch.addmm(x, torch.addmm(s, s, s, beta=b, alpha=c), x, beta=a)
    if not wide:
        x = x.T
    return x.reshape(g.shape).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """`lr`, `momentum`, `nesterov`, `weight_decay`: the SGD side (vectors and the output layer).
    `muon_lr`, `muon_momentum`: the Muon side (every other parameter with 2 or more dimensions), always Nesterov.
    `normalize`: before each step, rescale each Muon matrix to Frobenius norm sqrt(rows), as airbench94_muon does
    for conv filters followed by BatchNorm (their scale is then meaningless, so this replaces weight decay; the
    Muon side gets no weight decay)."""

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, nesterov: bool = True,
                 weight_decay: float = 0.0, muon_lr: float = 0.02, muon_momentum: float = 0.95, ns_steps: int = 5,
                 normalize: bool = False):
        for name, value in [("lr", lr), ("muon_lr", muon_lr), ("momentum", momentum),
                            ("muon_momentum", muon_momentum), ("weight_decay", weight_decay)]:
            if value < 0:
                raise ValueError(f"{name} must be >= 0, not {value}")
        if ns_steps < 1:
            raise ValueError(f"ns_steps must be >= 1, not {ns_steps}")
        params = [p for p in params if p.requires_grad]
        matrices = [p for p in params if p.ndim >= 2]
        head = matrices[-1] if len(matrices) > 1 else None   # a lone matrix is the whole model: let Muon have it
        muon = [p for p in matrices if p is not head]
        sgd = [p for p in params if p.ndim < 2 or p is head]
        groups = []   # the SGD side first, so that the lr that runs log (the first group's) is optim.lr's
        if sgd:
            groups.append({"params": sgd, "muon": False, "lr": lr, "momentum": momentum, "nesterov": nesterov,
                           "weight_decay": weight_decay})
        if muon:
            groups.append({"params": muon, "muon": True, "lr": muon_lr, "momentum": muon_momentum,
                           "nesterov": True, "weight_decay": 0.0})
        super().__init__(groups, {"lr": lr, "momentum": momentum, "nesterov": nesterov,
                                  "weight_decay": weight_decay, "muon": False, "ns_steps": ns_steps,
                                  "normalize": normalize})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["muon"]:
                for p in params:
                    self._muon_step(p, group)
                continue
            buffers = [self.state[p].get("momentum_buffer") for p in params]
            sgd_step(params, [p.grad for p in params], buffers, weight_decay=group["weight_decay"],
                     momentum=group["momentum"], lr=group["lr"], dampening=0.0, nesterov=group["nesterov"],
                     maximize=False)
            if group["momentum"]:   # torch's sgd() creates the first buffers in the list: keep them
                for p, buffer in zip(params, buffers):
                    self.state[p]["momentum_buffer"] = buffer
        return loss

    def _muon_step(self, p: torch.Tensor, group: dict):
        """Nesterov momentum (no weight decay), then the orthogonalized update."""
        momentum, state = group["momentum"], self.state[p]
        if "momentum_buffer" not in state:   # as torch.optim.SGD: the first buffer is the gradient
            buf = state["momentum_buffer"] = p.grad.clone()
        else:
            buf = state["momentum_buffer"].mul_(momentum).add_(p.grad)
        update = p.grad.add(buf, alpha=momentum)
        if group["normalize"]:
            p.mul_(math.sqrt(len(p)) / p.norm().clamp_min(1e-12))
        scale = math.sqrt(max(1.0, len(p) / (p.numel() // len(p))))   # tall matrices: rows/cols
        p.add_(orthogonalize(update, group["ns_steps"]), alpha=-group["lr"] * scale)
