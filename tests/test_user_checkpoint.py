"""A model that wraps its own blocks in ``torch.utils.checkpoint`` trains as the user's eager loop does.

Traced as it is, the checkpointed backward would replay dropout with fresh random draws (the
RNG state checkpoint saves is host state the trace does not see), silently unlike eager. The
capture inlines such blocks (``acir.frontend.trace._user_checkpoints_inlined``): eager
checkpointing computes what the block computes without it and leaves the RNG where one run of
the block leaves it. Compared, bit for bit, with the user's own eager loop over several steps
(the RNG stream carries across them), for both forms of checkpoint, and the reentrant form's
"no input requires grad, no gradient" kept.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import acir


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc1, self.fc2, self.drop = nn.Linear(d, 2 * d), nn.Linear(2 * d, d), nn.Dropout(0.3)

    def forward(self, x):
        return x + self.fc2(self.drop(torch.relu(self.fc1(x))))


class Checkpointed(nn.Module):
    def __init__(self, reentrant: bool, d: int = 16, frozen_input: bool = False) -> None:
        super().__init__()
        self.reentrant, self.frozen_input = reentrant, frozen_input
        self.pre = nn.Linear(d, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(3))
        self.head = nn.Linear(d, 4)

    def forward(self, x):
        # frozen_input: the blocks read the raw batch (no grad): reentrant checkpoint then gives
        # their parameters no gradient (only the head trains), and compiled they must not train either
        x = x if self.frozen_input else self.pre(x)
        for b in self.blocks:
            x = checkpoint(b, x, use_reentrant=self.reentrant)
        return self.head(x)


def loss_fn(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


@pytest.mark.parametrize("reentrant,frozen", [(False, False), (True, False), (True, True)],
                         ids=["non-reentrant", "reentrant", "reentrant-no-grad-input"])
def test_a_model_that_checkpoints_itself_trains_as_eager(reentrant, frozen):
    torch.manual_seed(0)
    model = Checkpointed(reentrant, frozen_input=frozen)
    ref, init = copy.deepcopy(model), copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), 1e-2)
    ref_opt = torch.optim.AdamW(ref.parameters(), 1e-2)
    batches = [(torch.randn(8, 16), torch.randint(0, 4, (8,))) for _ in range(3)]
    torch.manual_seed(1)
    step = acir.compile(model, opt, loss_fn, batches[0], quiet=True)
    acir_losses = [step(b) for b in batches]
    torch.manual_seed(1)
    ref_losses = []
    for b in batches:
        loss = loss_fn(ref, b)
        loss.backward()
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)
        ref_losses.append(loss.detach())
    assert all(torch.equal(a.detach(), r) for a, r in zip(acir_losses, ref_losses))
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), name
    moved = not torch.equal(ref.blocks[0].fc1.weight, init.blocks[0].fc1.weight)
    assert moved != frozen  # eager itself: no gradient through a reentrant block with no grad input
