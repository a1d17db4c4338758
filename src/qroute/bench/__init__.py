"""Benchmarks of qroute.

``workload`` builds the standard workload of the routing core for any
``Dispatcher`` class and measures its scenarios; ``core`` is ``qroute bench
core``, which runs them on every implementation in one process and prints the
comparison. The pytest-benchmark cases in ``benchmarks/`` use the same
workload module.
"""
