"""harness: everything that measures, and the command line. The only package that imports the others.

Subpackages, lower to higher (a module imports only from its own subpackage or a lower one; tests/test_layers.py):
  tables.py, toml_io.py  plain-text tables and TOML writing, shared by all (import nothing from harness)
  engines/   the engine protocol; our torch engine; the vLLM and SGLang adapters and their workers
  sweep/     sweep points and their rows, resume, the results files, run metadata, the machine reference, Ray fan-out
  probe/     measure this machine (matmul, bandwidth, GEMM curve, decode, prefill attention) into a hardware entry
  calibrate/ fit the model's factors to measured rows, compare predictions with measurements, published rows
  report/    results/REPORT.md and every plot
  campaign/  the GPU campaign: plan, stamp, run, collect
  cli/       the `archscale` parser and one thin module per command (parse, call, print)
"""
