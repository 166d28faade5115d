"""Test helpers: real servers on 127.0.0.1 for tests and benchmarks (never imported by the core)."""
