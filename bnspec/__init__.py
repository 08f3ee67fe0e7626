"""The operator's vocabulary: what every side of the suite may say about batch norm.

``bnspec`` holds the facts that the oracle and every backend share, and nothing that computes
an answer:

- ``bnspec.flags``: dtypes, flags, axis classes, output names, defaults and case ids;
- ``bnspec.validate``: the argument checks of the operator (errors naming parameter and value);
- ``bnspec.formats``: binary floating-point formats and correct rounding into them;
- ``bnspec.profiles``: named variant lists a backend declares as its semantic profile.

Both the oracle (``oracle/``) and every backend (``backends/``, or your own adapter) may import
it. It imports nothing of ``oracle``, ``conformance`` or ``backends``, and it is never the
oracle's answer: expected values come only from ``oracle`` (through the golden case files).
The layers are checked by ``lint-imports`` (pyproject.toml, ``[tool.importlinter]``).
"""
