"""Privacy modes: each is one module holding everything about it, behind one interface (``base.PrivacyMode``).

A mode owns its name and settings, how a client encodes its update (``encode``), how the coordinator sums and
releases updates (``aggregation``), and what it guarantees in words: who must collude to read one client's
update (``guarantee``), which ``compare``, ``audit`` and reports print. ``registry`` lists the modes; adding
one is its module, its tests and one registry line.
"""
