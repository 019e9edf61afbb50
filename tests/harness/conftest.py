"""Fixtures shared by the harness tests: the fake vLLM/SGLang packages (tests/harness/fake_engines.py)."""

from fake_engines import fake_engines  # noqa: F401  (registered as a fixture for every test here)
