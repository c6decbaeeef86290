"""Fixtures shared by the end-to-end modules (defined next to the launcher tests)."""

from tests.e2e.test_launch import launch, started, tiny_model

__all__ = ["launch", "started", "tiny_model"]
