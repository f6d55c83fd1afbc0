"""Studies over the stages: grids of banks (bank sweep) and of distillation settings (distill-sweep), a
study's archive (``archive``; ``clareps study run`` drives it from ``clareps.demo.study``) and the studies'
tables (``clareps study table ...``)."""
