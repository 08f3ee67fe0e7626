"""Conformance suite: runs the golden cases against any batch-norm backend.

    pytest conformance/ --backend numpy            # or --backend package.module:factory
    python -m conformance.repro CASE_ID --backend numpy

The only contract a backend implements is ``conformance.adapter.Backend``. The pytest
plugin (``conformance.plugin``) resolves the backend, parametrizes the tests with the case
ids, applies the tolerance table (``conformance.tolerances``) and writes the reports.
"""
