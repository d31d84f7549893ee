"""Comparisons: acir against its peers (``acir-bench``) and planners against each other.

``driver`` (the interleaved benchmark), ``configs`` (what each configuration builds),
``plots`` (its figures) and ``sweep`` (planners over budgets, ``acir-sweep``). The top
layer beside :mod:`acir.viz`.
"""
