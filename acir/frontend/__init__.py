"""From a PyTorch model and optimizer to the IR (capture).

``zoo`` (models by name and user factories), ``optim`` (optimizers as acir captures them),
``trace`` (make_fx over a whole training step), ``fx_import`` (fx graph -> IR), ``step``
(the capture entry point) and ``rebuild`` (the model again, from an artifact's provenance).
Imports :mod:`acir.ir` and :mod:`acir.pipeline`.
"""
