"""anyclaude: run Claude Code on local or alternative models."""

__version__ = "0.1.0"
