"""One seed, a whole new world: every random component's seed derives from ``SEED``.

``SEED`` draws the catalogue (models, colourways, cold SKUs, photos, splits). Every other random
component has a ``seed`` field in its settings dict — the alignment head (``ALIGN``: initialisation,
batches), the semantic IDs and notebook 02's baselines (``VRQ``), the shoppers and their logs
(``SIM``), the cascade (``MCA``), the generative model (``GEN``) and the A/B test's shoppers
(``AB``) — and takes ``SEED × 1000 + its base`` unless the dict sets its own ``seed``. The bases are
the seeds these components always had (0, the A/B test 1), so ``SEED: 0`` runs are unchanged, and
two SEEDs give unrelated shoppers and initial weights (their generators are seeded far apart).

A sweep can vary one *source* of variation at a time (``vary: [data, shoppers, models]`` in a spec,
see :mod:`ovkit.sweep`): the others are pinned to the profile's SEED by explicit seeds.
"""

from __future__ import annotations

# settings parameter → (source of variation, its seed at SEED 0)
COMPONENTS = {"ALIGN": ("models", 0), "VRQ": ("models", 0), "MCA": ("models", 0), "GEN": ("models", 0),
              "SIM": ("shoppers", 0), "AB": ("shoppers", 1)}
SOURCES = ("data", "shoppers", "models")  # what a sweep can vary apart ("world": all of them at once)
STRIDE = 1000  # SEED n's component seeds are n·1000 + base: far from every other SEED's


def component_seed(seed: int, name: str) -> int:
    """The seed component ``name`` (``"SIM"``, ``"GEN"``, …) takes under ``SEED = seed``."""
    if name not in COMPONENTS:
        raise ValueError(f"unknown component {name!r}; components: {', '.join(COMPONENTS)}")
    return int(seed) * STRIDE + COMPONENTS[name][1]


def seeded(settings: dict | None, name: str, seed: int) -> dict:
    """A copy of a settings dict (``SIM``, ``GEN``, …) with ``seed`` filled from ``SEED`` if it sets none."""
    if settings is not None and not isinstance(settings, dict):
        raise ValueError(f"{name} must be a mapping of setting names to values, got {settings!r}")
    return {"seed": component_seed(seed, name), **(settings or {})}


def seed_all(params: dict) -> dict:
    """A copy of notebook parameters with every component's seed filled from ``SEED``."""
    out = dict(params)
    for name in COMPONENTS:
        out[name] = seeded(params.get(name), name, params.get("SEED", 0))
    return out


def component_seeds(params: dict) -> dict:
    """What each random component of a run used: ``data`` (SEED) and every component's seed."""
    full = seed_all(params)
    return {"data": int(params.get("SEED", 0)), **{name: full[name]["seed"] for name in COMPONENTS}}


def pinned(params: dict, seed: int, vary: tuple, base: int) -> dict:
    """Overrides that give a sweep point ``seed`` for the sources in ``vary``, ``base`` for the others.

    A component whose seed ``params`` (profile, spec or grid) sets explicitly keeps it. Returns the
    ``SEED`` and the settings dicts to override (each merged with what ``params`` gives it).
    """
    unknown = sorted(set(vary) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown source(s) of variation {unknown}; sources: {', '.join(SOURCES)}")
    out = {"SEED": seed if "data" in vary else base}
    for name, (source, _) in COMPONENTS.items():
        given = params.get(name) or {}
        if "seed" not in given:
            out[name] = {**given, "seed": component_seed(seed if source in vary else base, name)}
    return out
