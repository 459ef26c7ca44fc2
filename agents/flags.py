"""Command-line metadata of settings fields, so that a setting is declared once, beside its default.

A dataclass field made with `setting` carries its flag's help, choices and parser; harness/run.py
`add_settings_flags` makes the flag (`flag_name`: `--q-agg` for `q_agg`) from them, and harness/config.py resolves
the value by the field's name. agents/sampler.py `SamplerSettings` (test-time settings) and
agents/config.py `AgentConfig` (training settings) are declared this way.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable


def setting(default, help: str, *, choices: tuple[str, ...] | None = None, parse: Callable | None = None,
            task_default: bool = False, shown_default: str | None = None):
    """A field with a flag. `parse` turns the flag's text into the value: a type such as `float` keeps
    argparse's own message for bad text; another parser's ValueError is the flag's one-line error.
    `task_default`: the run's task supplies the default (harness/config.py reads the task's attribute of
    the field's name), so the field's own default serves code that builds a config without a task.
    The help states the default: `shown_default` where the field's own would mislead, "the task's"
    with `task_default`, else the field's default unless it is None (then the help itself says it)."""
    return dataclasses.field(default=default, metadata={
        'help': help, 'choices': choices, 'parse': parse, 'task_default': task_default,
        'shown_default': shown_default})


def flag_fields(settings_class) -> list[dataclasses.Field]:
    """The fields of a settings dataclass that have a flag (made with `setting`), in declaration order."""
    return [field for field in dataclasses.fields(settings_class) if 'help' in field.metadata]


def flag_name(field_name: str) -> str:
    """The flag of a field: `q_agg` -> `--q-agg`."""
    return '--' + field_name.replace('_', '-')


def positive(integer: bool, note: str = '') -> Callable[[str], float | int]:
    """A command-line parser of a setting that must be finite and > 0 (and whole if `integer`)."""
    expected = 'a positive integer' if integer else 'a finite number > 0'

    def parse(text: str):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0 and (value.is_integer() or not integer)):
            raise ValueError(f"expected {expected}, got '{text}'{note}")
        return int(value) if integer else value
    return parse
