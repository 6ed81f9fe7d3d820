"""Hyperparameters declared once: in each model's constructor signature.

A model's hyperparameters are the parameters of its `__init__` after input_spec and num_tasks,
each with a default and a type annotated with a one-line help:

    def __init__(self, input_spec: InputSpec, num_tasks: int,
                 num_experts: Annotated[int, Help("number of experts")] = 8,
                 expert_units: Annotated[Units, Help("units per expert layer, e.g. 16 or 32,16")] = (16,)):

The type is int, float, `Units` (tuple[int, ...]: layer widths, one per layer; a single int is
one layer) or Literal["a", "b", ...] (one of those strings). From that declaration come the flags
of `mmoe train` (--num-experts; `options` merges the models' declarations into one flag per name,
of one type, whose help lists the models that take it and their defaults), the keys a config
file may set and their checks (`mmoe.config_file`), and the defaults `mmoe models -v` prints.
The values a flag's text or a JSON file gives are checked here (`parse`); the model's own
constructor checks the rest (positive sizes, three ranks, ...).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

Units = tuple[int, ...]  # layer widths, one per layer

# The kinds of value a hyperparameter takes.
INT, FLOAT, UNITS, CHOICE = "int", "float", "units", "choice"
_NOT_HYPERPARAMETERS = ("self", "input_spec", "num_tasks")


@dataclass(frozen=True)
class Help:
    """The one-line help of a hyperparameter, in its annotation: Annotated[int, Help("...")]."""

    text: str


@dataclass(frozen=True)
class Hyperparameter:
    """One model's declaration of one hyperparameter. choices: the allowed strings of a CHOICE."""

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()

    def shown_default(self) -> str:
        """The default as a flag would give it: 16,16,2 for (16, 16, 2)."""
        if self.kind == UNITS:
            return ",".join(str(v) for v in self.default)
        return str(self.default)


def declared_hyperparameters(model_class: type[Any]) -> dict[str, Hyperparameter]:
    """The hyperparameters `model_class.__init__` declares, in signature order. TypeError (a bug in
    the model, not bad input) when one lacks a default, a Help or a type of the four kinds."""
    init = model_class.__init__
    hints = typing.get_type_hints(init, include_extras=True)
    declared = {}
    for name, parameter in inspect.signature(init).parameters.items():
        if name in _NOT_HYPERPARAMETERS:
            continue
        where = f"{model_class.__name__}.__init__ parameter {name!r}"
        hint = hints.get(name)
        if parameter.default is inspect.Parameter.empty or parameter.kind not in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            raise TypeError(f"{where}: a hyperparameter needs a default and a name (no *args, **kwargs)")
        helps = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Help)]
        if typing.get_origin(hint) is not Annotated or len(helps) != 1:
            raise TypeError(f'{where}: expected an annotation Annotated[TYPE, Help("one line")]')
        kind, choices = _kind(typing.get_args(hint)[0], where)
        declared[name] = Hyperparameter(name, kind, parameter.default, helps[0].text, choices)
    return declared


def _kind(hint: Any, where: str) -> tuple[str, tuple[str, ...]]:
    if hint is int:
        return INT, ()
    if hint is float:
        return FLOAT, ()
    if hint == Units:
        return UNITS, ()
    if typing.get_origin(hint) is Literal and all(isinstance(v, str) for v in typing.get_args(hint)):
        return CHOICE, typing.get_args(hint)
    raise TypeError(f"{where}: type {hint!r} is not one of int, float, Units (tuple[int, ...]) or Literal[str, ...]")


@dataclass(frozen=True)
class Option:
    """One hyperparameter name over all models that take it: one flag of `mmoe train`, one key
    of a config file. declarations: (model name, its Hyperparameter) for each model taking it."""

    name: str
    kind: str
    choices: tuple[str, ...]
    declarations: tuple[tuple[str, Hyperparameter], ...]

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(model for model, _ in self.declarations)

    def help(self) -> str:
        """Each distinct help text once, with the models it is theirs and their defaults:
        "units per tower layer (default 8: single-task, shared-bottom, ...)"."""
        texts: dict[str, dict[str, list[str]]] = {}
        for model, declared in self.declarations:
            texts.setdefault(declared.help, {}).setdefault(declared.shown_default(), []).append(model)
        return "; ".join(
            text
            + " ("
            + "; ".join(f"default {default}: {', '.join(models)}" for default, models in defaults.items())
            + ")"
            for text, defaults in texts.items()
        )

    def parse(self, value: Any) -> Any:
        """A JSON value (or a value in Python) as the model takes it: units as a tuple of ints, a
        float as float. ValueError saying what was expected when it is of another kind."""

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if self.kind == UNITS:
            units = [value] if is_int(value) else value
            if isinstance(units, (list, tuple)) and units and all(is_int(v) and v >= 1 for v in units):
                return tuple(units)
            expected = "a positive integer or a list of them, e.g. [16] or [64, 32]"
        elif self.kind == FLOAT:
            if is_int(value) or isinstance(value, float):
                return float(value)
            expected = "a number"
        elif self.kind == INT:
            if is_int(value):
                return value
            expected = "an integer"
        else:
            if value in self.choices:
                return value
            expected = f"one of: {', '.join(self.choices)}"
        raise ValueError(expected)


def options(models: Iterable[type[Any]]) -> dict[str, Option]:
    """One Option per hyperparameter name of `models` (classes with a `name`), in order of first
    appearance. TypeError when two models declare one name with different kinds or choices: a
    flag has one type."""
    merged: dict[str, list[tuple[str, Hyperparameter]]] = {}
    for model_class in models:
        for name, declared in declared_hyperparameters(model_class).items():
            merged.setdefault(name, []).append((model_class.name, declared))
    result = {}
    for name, declarations in merged.items():
        (first_model, first), *others = declarations
        for model, declared in others:
            if (declared.kind, declared.choices) != (first.kind, first.choices):
                raise TypeError(
                    f"hyperparameter {name!r} is {_describe(first)} in model {first_model} but "
                    f"{_describe(declared)} in model {model}; one name must have one type"
                )
        result[name] = Option(name, first.kind, first.choices, tuple(declarations))
    return result


def _describe(declared: Hyperparameter) -> str:
    return f"{declared.kind} ({', '.join(declared.choices)})" if declared.choices else declared.kind
