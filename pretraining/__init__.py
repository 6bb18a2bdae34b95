"""Deprecated spelling of ``ofa_explore.pretraining``, kept for one release (not installed).

``python -m pretraining.train`` and ``torchrun -m pretraining.train`` still work from the
repository root; they print a one-line notice and run ``ofa_explore.pretraining.train``.
"""
