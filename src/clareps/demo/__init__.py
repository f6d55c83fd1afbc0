"""``clareps demo``: the whole pipeline in one run root (``pipeline``), its config (``spec``), what it
reuses and refuses (``reuse``) and its command (``cli``)."""

from clareps.demo.cli import demo
from clareps.demo.pipeline import Pipeline
from clareps.demo.spec import DemoConfig, load_demo_config

__all__ = ["DemoConfig", "Pipeline", "demo", "load_demo_config"]
