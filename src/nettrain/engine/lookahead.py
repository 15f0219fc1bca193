"""Lookahead (Zhang et al., 2019) with airbench's schedule: slow weights that the fast ones are pulled back to.

Every `every` optimizer steps the slow copy of the model's float state (weights and BatchNorm statistics) moves
part of the way to the fast one, and the fast one is reset to it:

    slow <- d * slow + (1 - d) * fast;  fast <- slow,   d = decay**every * (t / total)**3

The share `d` of the slow weights starts at 0 (plain training) and rises with the cube of the progress, so the
average matters only in the last part of the run; at the last step d = 1 and the model ends on the slow weights.
This is how airbench94 reaches its accuracy in ten epochs. Its state (the step count and the slow copy) is saved
in checkpoints, so a resumed run continues it exactly.
"""
from __future__ import annotations

import torch


class Lookahead:
    def __init__(self, module: torch.nn.Module, every: int, decay: float, total_steps: int):
        self.every, self.decay, self.total = every, decay, max(1, total_steps)
        self.step_count = 0
        # The model's float tensors, found once: state_dict values share storage with the parameters and buffers,
        # and loading a checkpoint copies into them in place, so these stay the live tensors.
        live = {k: v for k, v in module.state_dict().items() if v.is_floating_point()}
        self.fast = list(live.values())
        self.slow = {k: v.clone() for k, v in live.items()}

    def share(self, t: int) -> float:
        """The slow weights' share `d` after step t."""
        return 1.0 if t >= self.total else self.decay ** self.every * (t / self.total) ** 3

    @torch.no_grad()
    def step(self):
        self.step_count += 1
        t = self.step_count
        if t % self.every and t != self.total:
            return
        slow = list(self.slow.values())
        torch._foreach_lerp_(slow, self.fast, 1 - self.share(t))   # one kernel per list, as torch.optim does
        torch._foreach_copy_(self.fast, slow)

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "slow": dict(self.slow)}

    def load_state_dict(self, state: dict):
        self.step_count = state["step_count"]
        torch._foreach_copy_(list(self.slow.values()), [state["slow"][k] for k in self.slow])
