"""The diagnosis rules, grouped by what they look at.

* :mod:`.dead_units` — why the dead units of one layer died (DR001–DR003, DR013).
* :mod:`.depth` — patterns across layers: dead layers, depth trends, constant output (DR004–DR006).
* :mod:`.data` — the data: input scale, sample count, non-finite values (DR007, DR011, DR012).
* :mod:`.activations` — the activations themselves: output ReLU, saturation, always-on (DR008–DR010).

Each rule is a function decorated with :func:`deadrelu.diagnose.registry.rule`,
which carries its code and documentation.
"""
