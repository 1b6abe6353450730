"""Helpers for the plain classes that stand in for dataclasses on the start-up path.

``create`` and ``run`` build their option classes in every process; generating a
dataclass's methods for sixty fields (and importing :mod:`dataclasses`, which imports
:mod:`inspect`) costs milliseconds, so those classes are written out by hand with these.
"""

from __future__ import annotations

from typing import Any


class _Fresh:
    """The default of a parameter that gets a new empty list or dict (``dataclasses``'
    ``default_factory``: passing None explicitly still stores None)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


#: use as a parameter default, then ``[] if value is FRESH else value``
FRESH: Any = _Fresh()


def plain_copy(value: Any) -> Any:
    """A deep copy of a field's value, as :func:`dataclasses.asdict` and :func:`copy.deepcopy`
    make one: lists, tuples and dicts rebuilt, scalars as they are, anything else through
    :func:`copy.deepcopy` (imported only then: with :mod:`weakref` it costs a millisecond)."""
    cls = type(value)
    if cls is str or cls is int or cls is bool or cls is float or value is None:
        return value
    if cls is list:
        return [plain_copy(v) for v in value]
    if cls is dict:
        return {plain_copy(k): plain_copy(v) for k, v in value.items()}
    if cls is tuple:
        return tuple(plain_copy(v) for v in value)
    import copy

    return copy.deepcopy(value)
