"""Measuring the product: HumanEval pass@k (with sandboxed execution and doctest
ranking), HumanEval-Infilling, and keystroke latency / throughput benchmarks.

Everything here drives the same :class:`~lsp_server.engine.CompletionEngine` (or the
real ``ghostpilot serve`` process) that editors use: we evaluate the product, not
the bare model.
"""
