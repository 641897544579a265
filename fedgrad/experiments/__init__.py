"""Experiments: what runs a federation and measures it, above ``server/`` and ``client/`` and below the CLI.

- ``run``:     open a run (new or resumed), serve it, or simulate it whole with a fleet of client workers;
- ``compare``: one scenario under several privacy settings, collected into one table (``fedgrad compare``);
- ``audit``:   the leakage audit, how much of one client's email the coordinator can read (``fedgrad audit``);
- ``plots``:   the PNG plots of run reports and comparisons.
"""
