"""Backends shipped with the suite.

- ``numpy`` (``backends.numpy_backend:NumpyBackend``): the reference run and the README
  example of an adapter; float64 accumulation, every mode, forward and backward.

Each is registered under the ``bn_conformance.backends`` entry point group
(pyproject.toml) and selected with ``pytest conformance/ --backend NAME``.
"""
