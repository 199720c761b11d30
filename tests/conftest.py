"""pytest setup shared by the tests: a Hypothesis profile for `make mutate`."""

from hypothesis import Phase, settings

# `make mutate` runs the fast tests once per mutant: a failing fuzz case is enough to kill it,
# shrinking it to the smallest one would only cost time (pyproject.toml's [tool.mutmut]).
settings.register_profile("mutation", phases=[Phase.explicit, Phase.reuse, Phase.generate])
