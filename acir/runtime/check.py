"""``acir-run --check``: the captured step against eager PyTorch, from the same start.

Both sides are rebuilt from the artifact's provenance with the same seed (same weights,
batch and optimizer state), the RNG is re-seeded identically right before each step
(dropout draws the same masks), one step runs on each, and then the loss and everything
the step updates — parameters, buffers, optimizer state — are compared. NaNs in the same
place compare equal. The maximum absolute difference is 0 when the step is bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Difference:
    what: str
    max_abs_diff: float
    mismatched: int
    numel: int


@dataclass
class CheckReport:
    max_abs_diff: float
    compared: int
    loss_eager: float
    loss_acir: float
    worst: list[Difference] = field(default_factory=list)
    reference: str = "eager"

    @property
    def ok(self) -> bool:
        return self.max_abs_diff == 0.0

    def summary(self, limit: int = 5) -> str:
        if self.ok:
            return (f"check: OK, bit-identical to {self.reference} ({self.compared} tensors: loss, parameters, "
                    f"buffers, optimizer state; loss {self.loss_acir:.6g})")
        lines = [f"check: MISMATCH, max abs diff {self.max_abs_diff:.3g} over {self.compared} tensors "
                 f"(loss {self.reference} {self.loss_eager:.9g} vs acir {self.loss_acir:.9g}); worst:"]
        for d in self.worst[:limit]:
            lines.append(f"  {d.what}: max abs diff {d.max_abs_diff:.3g}, {d.mismatched}/{d.numel} elements differ")
        return "\n".join(lines)


def _diff(what: str, a, b) -> Difference:
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return Difference(f"{what} (shape/dtype {tuple(a.shape)}/{a.dtype} vs {tuple(b.shape)}/{b.dtype})",
                          float("inf"), a.numel(), a.numel())
    if a.numel() == 0:
        return Difference(what, 0.0, 0, 0)
    x, y = a.detach().cpu(), b.detach().cpu()
    if x.dtype.is_floating_point or x.dtype.is_complex:
        same = (x == y) | (torch.isnan(x) & torch.isnan(y))
        d = (x.double() - y.double()).abs()
        d = torch.where(same, torch.zeros_like(d), d)
        d = torch.nan_to_num(d, nan=float("inf"))
    else:
        same = x == y
        d = (x.long() - y.long()).abs().double() if x.dtype != torch.bool else (~same).double()
    return Difference(what, float(d.max()), int((~same).sum()), x.numel())


def compare_states(model_a, opt_a, model_b, opt_b) -> list[Difference]:
    """Differences between two model+optimizer states, parameter by parameter."""
    out = []
    pa, pb = dict(model_a.named_parameters()), dict(model_b.named_parameters())
    for name, p in pa.items():
        out.append(_diff(f"param {name}", p, pb[name]))
        sa, sb = opt_a.state.get(p, {}), opt_b.state.get(pb[name], {})
        for key in sa:
            out.append(_diff(f"optimizer state {name}:{key}", sa[key], sb[key]))
    ba, bb = dict(model_a.named_buffers()), dict(model_b.named_buffers())
    for name, b in ba.items():
        out.append(_diff(f"buffer {name}", b, bb[name]))
    return out


def check_against_eager(make: Callable[[], tuple[Any, Any, Any, Any]], run_acir: Callable[[Any, Any, Any], Any],
                        step_seed: int, reference: Callable[[Any, Any, Any], Any] | None = None,
                        reference_name: str = "eager", clip_grad_norm: float | None = None,
                        accumulate: int = 1) -> CheckReport:
    """Run one reference step and one acir step from identical fresh states and compare.

    ``make()`` returns a fresh ``(model, optimizer, loss_fn, batch)`` built from the same
    seed each call; ``run_acir(model, optimizer, batch)`` runs the captured step on it.
    The reference is eager PyTorch unless ``reference(model, optimizer, batch)`` is given
    (e.g. the graph before a rewrite), named ``reference_name`` in the report; the eager step
    clips to ``clip_grad_norm`` and is the last of ``accumulate`` micro-batches when asked
    (``make()`` then gives the parameters the earlier micro-batches' ``.grad``).
    """
    import torch

    from acir.frontend.optim import eager_step

    model_a, opt_a, loss_fn, batch_a = make()
    torch.manual_seed(step_seed)
    if reference is None:
        loss_a = eager_step(model_a, opt_a, loss_fn, batch_a, clip_grad_norm, accumulate)
    else:
        loss_a = reference(model_a, opt_a, batch_a)
    model_b, opt_b, _, batch_b = make()
    torch.manual_seed(step_seed)
    loss_b = run_acir(model_b, opt_b, batch_b)
    diffs = [_diff("loss", loss_a, loss_b)] + compare_states(model_a, opt_a, model_b, opt_b)
    worst = sorted((d for d in diffs if d.mismatched), key=lambda d: -d.max_abs_diff)
    return CheckReport(max((d.max_abs_diff for d in diffs), default=0.0), len(diffs),
                       float(loss_a), float(loss_b), worst, reference_name)
