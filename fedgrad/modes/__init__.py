"""Privacy modes: each is one module holding everything about it, behind one interface (``base.PrivacyMode``).

A mode owns its name and its typed settings (read from the scenario and validated by the mode), whether updates
travel encrypted, how a client encodes its update (``encode``), how the coordinator sums and releases updates
(``aggregation``), what it guarantees in words: who must collude to read one client's update (``guarantee``),
which ``compare``, ``audit`` and reports print, and what experiments need to know about it (``profile``,
``describe_round``): nothing outside this package decides anything from a mode's name. ``registry`` lists the
modes; adding one is its module, its tests and one registry line.
"""
