"""Command-line flags generated from the ``Settings`` model, so a new setting cannot be forgotten by the CLI.

Every field of ``Settings`` becomes ``--field-name`` with the field's description as help, its type (choices for
``Literal`` fields) and no default of its own: a flag that is not given is simply absent, and pydantic-settings
then fills the field from ``SCORER_<FIELD>`` or the model default.  That gives one precedence rule for every
setting: flag > ``SCORER_*`` environment > default.

Why generated typer parameters rather than pydantic-settings' own CLI source: the ``scorer`` command has several
subcommands (worker, produce, tail, broker, train, demo) in one typer app; generating the worker's parameters keeps
one parser, one ``--help`` style and one error format for all of them, while validation, env handling and
precedence stay pydantic-settings' own (the flags are passed as init values, which win over the environment).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import typer
from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

_SECRET_NOTE = " Secret: prefer the environment variable (command lines are visible to other users)."


def _flag_type(annotation: Any) -> Any:
    """The type typer parses for a field annotation (``None`` removed; secrets and unions read as text)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _flag_type(members[0])
        return str  # e.g. Literal["auto"] | int: pydantic parses the text
    if annotation is SecretStr:
        return str
    if origin is dict:
        return list[str]
    if origin is Literal or annotation in (str, int, float, bool, Path):
        return annotation
    raise TypeError(f"no flag type for settings annotation {annotation!r}")


def _default_text(field: Any) -> str:
    if field.default is PydanticUndefined or field.default_factory is not None:
        return ""
    if field.default is None:
        return ""
    return f" [default: {field.default}]"


def settings_parameters(model: type[BaseModel], env_prefix: str = "SCORER_") -> list[inspect.Parameter]:
    """One keyword-only typer option per model field, named ``--field-name``; default None (= not given)."""
    params = []
    for name, field in model.model_fields.items():
        flag_type = _flag_type(field.annotation)
        help_text = (field.description or "") + _default_text(field)
        if field.annotation is SecretStr or SecretStr in get_args(field.annotation):
            help_text += _SECRET_NOTE
        decls: list[str] = []
        if get_origin(flag_type) is list:
            help_text += " Repeatable key=value."
        option = typer.Option(
            *decls,
            help=f"{help_text} [env: {env_prefix}{name.upper()}]",
            show_default=False,
            rich_help_panel="Settings",
        )
        annotation = Annotated[Optional[flag_type], option]  # type: ignore[valid-type]  # noqa: UP045
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation))
    return params


def with_settings_flags(model: type[BaseModel]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the command receives its own parameters plus one keyword argument per settings field."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(func, eval_str=True).parameters.values() if p.kind != p.VAR_KEYWORD]
        func.__signature__ = inspect.Signature([*own, *settings_parameters(model)])  # type: ignore[attr-defined]
        return func

    return decorate


def given_flags(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """The settings fields among ``values`` that were given on the command line (not None)."""
    return {name: values[name] for name in model.model_fields if values.get(name) is not None}
