"""Analyses of a graph and the planning problem, without running anything.

``simulator`` (storage lifetimes, the memory timeline), ``loss_head`` (the in-place loss
head the planners plan on), ``candidates`` (graph -> :class:`~acir.analysis.problem.Problem`),
``problem`` (the planners' arrays and the evaluator that prices a plan), ``plan_delta``
(incremental pricing) and ``budget`` (budget text -> bytes). Imports only :mod:`acir.ir`.
"""
