"""Tests of the runtime (images/runtime, package cs_runtime) and the example models.

A package, so its module names (runtime.test_gateway, ...) cannot clash with tests/chart's.
"""
