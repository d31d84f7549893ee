"""Pass infrastructure: what a pass is, how a pipeline is written and run.

``pass_base`` (the :class:`Pass` dataclass, its options and results), ``syntax``
(``-p 'a,b{k=v}'`` text), ``manager`` (runs passes, verifies, keeps analyses fresh) and
``registry`` (pass names to classes, imported lazily). Imports only :mod:`acir.ir`.
"""
