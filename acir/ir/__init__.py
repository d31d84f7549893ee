"""The IR: the data model of a captured training step and every form it takes.

``graph`` (values, storages, nodes, regions, roles), ``analyses`` (the typed analysis
blocks and their keys), ``ops`` (what an aten overload reads and writes), ``acir_ops``
(acir's own operators) and ``rng`` (their placement for dropout replay); the forms:
``serde`` (protobuf; the only module that touches the generated classes), ``text``/``text_parse`` (the readable
form), ``artifact`` (files), and ``verify`` (the invariants). Imports nothing above it.
"""
