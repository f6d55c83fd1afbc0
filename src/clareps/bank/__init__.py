"""The canonical bank as a product: its build (``build``), its files (``format``), its views, its measures
(``metrics``, ``selectivity``) and the ``clareps bank`` verbs (``cli``); the algorithm is ``clareps.clarid``."""
