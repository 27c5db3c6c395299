"""A search space written in Hydra's sweep syntax, as Optuna distributions, and a trial's values back as overrides.

``hydra.sweeper.params`` (and sweep overrides typed on the command line) use Hydra's own grammar, which Hydra
parses; each kind maps onto one Optuna distribution:

- ``interval(a, b)``: a float from a to b (``FloatDistribution``); ``int(interval(a, b))``: an integer;
  ``tag(log, interval(...))``: on a log scale.
- ``range(a, b, step)``: integers a, a + step, ... below b (``IntDistribution`` with its step); a float range is
  the list of its values.
- ``choice(x, y, ...)`` or ``x,y,...``: one of the values (``CategoricalDistribution``).

Any other override (``trainer.max_epochs=3``) is passed unchanged to every trial.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from alexnet.errors import UserError

CATEGORICAL_TYPES = (type(None), bool, int, float, str)


@dataclass
class SearchSpace:
    """The distributions to sample (by override key), the overrides every trial gets, and for categorical values
    the override text Hydra parsed each from (so a value goes back exactly as it was written)."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    written: dict[str, dict[object, str]] = field(default_factory=dict)

    def overrides(self, params: dict[str, object]) -> list[str]:
        """The overrides of a trial whose sampled values are ``params``."""
        chosen = [f"{key}={self.written[key][value] if key in self.written else number(value)}"
                  for key, value in params.items()]  # fmt: skip
        return [*self.fixed, *chosen]


def number(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def parse_space(overrides: list[str], parser: OverridesParser | None = None) -> SearchSpace:
    """``overrides``: ``key=<sweep>`` strings, the config's params first and the command line's after (a key given
    twice takes the later one, as Hydra's own sweeper does)."""
    parser = parser or OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except HydraException as error:
        raise UserError(f"The search space cannot be read: {error}") from error
    by_key = {override.get_key_element(): override for override in parsed}
    space = SearchSpace()
    for key, override in by_key.items():
        if not override.is_sweep_override():
            space.fixed.append(f"{key}={override.get_value_element_as_str()}")
            continue
        sweep = override.value()
        if isinstance(sweep, IntervalSweep):
            log = "log" in sweep.tags
            if isinstance(sweep.start, int) and isinstance(sweep.end, int):
                space.distributions[key] = IntDistribution(sweep.start, sweep.end, log=log)
            else:
                space.distributions[key] = FloatDistribution(float(sweep.start), float(sweep.end), log=log)
            continue
        values = list(override.sweep_iterator())
        if isinstance(sweep, RangeSweep) and values and all(isinstance(v, int) for v in values) and sweep.step > 0:
            space.distributions[key] = IntDistribution(values[0], values[-1], step=int(sweep.step))
            continue
        if not isinstance(sweep, ChoiceSweep | RangeSweep) or not values:
            raise UserError(f"{key}: {type(sweep).__name__} cannot be searched; use interval(), range() or choice().")
        if not all(isinstance(v, CATEGORICAL_TYPES) for v in values):
            raise UserError(f"{key}: Optuna chooses among numbers, strings, booleans or null, not {values}.")
        space.distributions[key] = CategoricalDistribution(values)
        space.written[key] = dict(zip(values, override.sweep_string_iterator(), strict=True))
    return space
