"""acir's own operators (namespace ``acir``): what the IR can call besides aten.

Two families, each defined here with ``torch.library`` and implemented in Python, so that
an artifact that names them runs wherever acir is installed (:func:`acir.ir.ops.resolve_op`
imports this module for the ``acir`` namespace):

* the random-number state of dropout (:mod:`acir.ir.rng` places them in a graph):
  ``acir::rng_state(like)`` snapshots the generator of ``like``'s device without advancing
  it, ``acir::keep_rng_states(states)`` keeps the snapshots alive to the end of the
  backward, and ``acir::bernoulli_replay_(self, p, state)`` draws from a snapshot and puts
  the generator back;
* the in-place loss-head backward of :mod:`acir.analysis.loss_head`, described below.

The in-place loss-head backward.

A cross-entropy loss runs ``log_softmax`` then ``nll_loss``. Its backward materialises
``nll_loss_backward``'s gradient (rows x classes, zero but for one entry per row) beside the
saved log-probabilities, and ``_log_softmax_backward_data`` writes a third tensor of that
size. For a language model those are the three largest tensors of the step.

``acir::log_softmax_nll_backward_(output, grad_output, target, weight, reduction,
ignore_index, total_weight, dim)`` computes the same gradient into ``output`` (the
log-probabilities, which die there), a block of rows at a time: for each block it calls
the two aten kernels themselves, ``nll_loss_backward`` on the block (``total_weight`` is
the whole batch's, so each row gets the value it gets in one call) and
``_log_softmax_backward_data`` with ``out=`` the block of ``output`` it reads; one scratch block is reused. Both
kernels work row by row, so the result is the aten pair's bit for bit
(``tests/test_loss_head.py`` checks it), and the extra memory is one block of
``nll_loss_backward``'s gradient, at most :data:`BLOCK_BYTES`, freed inside the operator.
"""

from __future__ import annotations

import torch

#: The most bytes of ``nll_loss_backward`` gradient alive at once inside the operator.
BLOCK_BYTES = 1 << 20

_LIB = torch.library.Library("acir", "FRAGMENT")  # defined on import (acir.ir.ops.resolve_op imports this)
_LIB.define("log_softmax_nll_backward_(Tensor(a!) output, Tensor grad_output, Tensor target, Tensor? weight, "
            "int reduction, SymInt ignore_index, Tensor total_weight, int dim) -> Tensor(a!)")


def block_rows(classes: int, itemsize: int) -> int:
    """Rows per block so that one block of the dense gradient stays within :data:`BLOCK_BYTES`."""
    return max(1, BLOCK_BYTES // max(1, classes * itemsize))


def log_softmax_nll_backward_(output, grad_output, target, weight, reduction: int, ignore_index: int,
                              total_weight, dim: int):
    aten = torch.ops.aten
    rows, classes = output.shape
    step = block_rows(classes, output.element_size())
    per_row = grad_output.dim() > 0  # reduction "none": one gradient per row
    scratch = output.new_empty((min(step, rows), classes))
    for a in range(0, rows, step):
        b = min(rows, a + step)
        block, g = output[a:b], scratch[:b - a]
        aten.nll_loss_backward.grad_input(grad_output[a:b] if per_row else grad_output, block, target[a:b], weight,
                                          reduction, ignore_index, total_weight, grad_input=g)
        aten._log_softmax_backward_data.out(g, block, dim, output.dtype, out=block)
    return output


def _meta(output, grad_output, target, weight, reduction, ignore_index, total_weight, dim):
    return output


_LIB.impl("log_softmax_nll_backward_", log_softmax_nll_backward_, "CompositeExplicitAutograd")
_LIB.impl("log_softmax_nll_backward_", _meta, "Meta")


# ---------------------------------------------------------------------------
# Random-number state (acir.ir.rng)

#: The op that snapshots a generator state, the one that keeps the snapshots alive.
STATE_OP = "acir.rng_state.default"
KEEP_OP = "acir.keep_rng_states.default"
#: Random op -> the op that replays it from a saved state (same arguments, the state appended).
REPLAY = {"aten.bernoulli_.float": "acir.bernoulli_replay_.default"}

_LIB.define("rng_state(Tensor like) -> Tensor")
_LIB.define("keep_rng_states(Tensor[] states) -> ()")
_LIB.define("bernoulli_replay_(Tensor(a!) self, float p, Tensor state) -> Tensor(a!)")


def generator(device: torch.device) -> torch.Generator:
    """The default generator that random ops on ``device`` draw from."""
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        torch.cuda.init()
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    raise NotImplementedError(f"acir cannot save the random-number state of a {device.type} device")


def state_bytes(device: str) -> int:
    """Bytes of one saved generator state for ``device``."""
    return generator(torch.device(device)).get_state().numel()


def _rng_state(like):
    return generator(like.device).get_state()


def _keep_rng_states(states) -> None:
    return None


def _bernoulli_replay_(self, p: float, state):
    gen = generator(self.device)
    now = gen.get_state()
    gen.set_state(state)
    try:
        torch.ops.aten.bernoulli_.float(self, p)
    finally:
        gen.set_state(now)
    return self


_LIB.impl("rng_state", _rng_state, "CompositeExplicitAutograd")
_LIB.impl("keep_rng_states", _keep_rng_states, "CompositeExplicitAutograd")
_LIB.impl("bernoulli_replay_", _bernoulli_replay_, "CompositeExplicitAutograd")
