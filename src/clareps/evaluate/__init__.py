"""Evaluation: accuracy, the shape judge, teacher checks, robustness (later issues)."""
