"""Golden case files (schema 1, see docs/case-format.md): the ``Case`` record, its writer and
its hardened reader, importable from here.

- ``model``: ``Case``, ``ErrorSpec``, the schema's names and sizes, ``id_matches``;
- ``number_text``: the exact text forms of numbers (hex floats, 32-digit decimals);
- ``write``: ``render_case`` / ``write_case``, deterministic bytes for the same case;
- ``read``: ``load_case`` / ``load_cases`` / ``iter_case_paths``, which check size, digest,
  YAML safety and every field before allocating anything large, and raise ``CaseFileError``
  naming the file and the field.

Data flows one way: ``model`` and ``number_text`` import neither ``write`` nor ``read``.
"""
from .model import (DIST_SIDECAR_BYTES, EXCEPTIONS, EXPECTED_SIDECAR_BYTES, EXTRA_DTYPES,
                    INPUT_NAMES, QUANTIZED_PARAMS, SCHEMA, Case, ErrorSpec, expected_names,
                    id_matches, quantized_output_dtype)
from .compact import COMPACT_FROM, release
from .number_text import VALUE_DIGITS, decimal_value, hex_float, parse_value, yaml_float
from .read import (MAX_ELEMENTS, MAX_FILE_BYTES, MAX_NESTING, MAX_RANK, MAX_SIDECAR_BYTES,
                   CaseFileError, iter_case_paths, load_case, load_cases)
from .write import DEFAULT_COMMAND, HEADER, INLINE_LIMIT, render_case, write_case

__all__ = ["COMPACT_FROM", "release", "DIST_SIDECAR_BYTES", "EXCEPTIONS", "EXPECTED_SIDECAR_BYTES", "EXTRA_DTYPES",
           "INPUT_NAMES", "QUANTIZED_PARAMS", "SCHEMA", "Case", "ErrorSpec", "expected_names",
           "id_matches", "quantized_output_dtype", "VALUE_DIGITS", "decimal_value", "hex_float",
           "parse_value", "yaml_float", "MAX_ELEMENTS", "MAX_FILE_BYTES", "MAX_NESTING",
           "MAX_RANK", "MAX_SIDECAR_BYTES", "CaseFileError", "iter_case_paths", "load_case",
           "load_cases", "DEFAULT_COMMAND", "HEADER", "INLINE_LIMIT", "render_case", "write_case"]
