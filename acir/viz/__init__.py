"""Pictures and reports of an artifact: ``acir-viz`` and ``acir-stats``.

``dot`` (the graph as DOT), ``memory`` (the memory timeline), ``plots`` (matplotlib
helpers), ``report`` (the facts ``acir-stats`` prints) and ``common`` (formats, Graphviz).
Imports the layers below; nothing imports it but :mod:`acir.tools`.
"""
