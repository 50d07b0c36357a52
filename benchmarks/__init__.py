"""Benchmarks: the served HTTP routes side by side with raw onnxruntime, torch and the solvers.

`python -m benchmarks run --json out.json [--quick] [--cases A,B,...]` starts the service
itself (uvicorn via `python -m app`, plus a private redis-server for case D), warms up,
measures with a real HTTP client (Python's http.client, keep-alive; httpx rows show what a
heavier client adds) and prints a table; the JSON holds medians, p99, the machine and every
target of the performance issue as pass or fail, each a ratio measured in the same run.
`python -m benchmarks.gpu_check` checks the CUDA provider.

Benchmarks print numbers; they are not timed tests (tests/test_benchmarks.py only checks that
a quick run works and writes what it should).
"""
