"""Datasets: the default benchmark and loaders for data users bring."""
