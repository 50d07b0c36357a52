"""The reliability suite at small scale: benchmarks.chaos's scenarios, asserting that no answer
is wrong and none is lost (`python -m benchmarks chaos` runs the same, larger)."""
