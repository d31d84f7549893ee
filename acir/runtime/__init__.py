"""Running the IR: lowering to ``torch.fx``, binding live tensors, measuring.

``lower`` (IR -> GraphModule, and :class:`BoundStep`), ``node_runner`` (node by node, for
the profile), ``measure`` (live-storage memory and latency) and ``check`` (against the
eager step). Imports :mod:`acir.ir` and :mod:`acir.frontend`.
"""
