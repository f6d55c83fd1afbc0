"""Classifiers used by every stage: the students, their training and prediction, one checkpoint format, and the judges (shape, background source, mask)."""
