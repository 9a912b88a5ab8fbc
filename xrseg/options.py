"""Options dataclasses as typer flags: `@flags_from_options` on a command whose parameters are
annotated with frozen dataclasses (engine/options.py) gives it one flag per field.

    @app.command()
    @flags_from_options
    def serve(options: ServeOptions, log_level: str = "INFO") -> None: ...

Fields whose type is itself a dataclass (ServeOptions.model: ModelOptions) are flattened, so
`--model`, `--device` and `--ice-server` are the same flags on every command that nests the
same class. Flag names must be unique across a command; a clash is an error at import, not a
silently shadowed flag.

Why not typer's own mechanism: typer builds flags from a function's signature only. This gives
the wrapper a signature (`__signature__`) listing the fields and packs the parsed values back
into the dataclasses before calling the command.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def flags_from_options(command: F) -> F:
    """Expand every dataclass-annotated parameter of `command` into its fields' flags."""
    signature = inspect.signature(command, eval_str=True)
    groups: dict[str, type] = {}
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        if dataclasses.is_dataclass(parameter.annotation):
            groups[parameter.name] = parameter.annotation  # type: ignore[assignment]
            parameters.extend(_flags(parameter.annotation))  # type: ignore[arg-type]
        else:
            parameters.append(parameter)
    names = [p.name for p in parameters]
    if clashes := {n for n in names if names.count(n) > 1}:
        raise TypeError(f"{command.__qualname__}: flags defined twice: {sorted(clashes)}")

    @functools.wraps(command)
    def wrapper(**values: Any) -> Any:
        for name, cls in groups.items():
            values[name] = _build(cls, values)
        return command(**values)

    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper  # type: ignore[return-value]


def _flags(cls: type) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(cls, include_extras=True)
    out: list[inspect.Parameter] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out.extend(_flags(hint))  # type: ignore[arg-type]
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        out.append(inspect.Parameter(f.name, kind, default=default, annotation=hint))
    return out


def _build(cls: type, values: dict[str, Any]) -> Any:
    """The dataclass `cls` from the parsed flag values (consumed from `values`)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        kwargs[f.name] = _build(hint, values) if dataclasses.is_dataclass(hint) else values.pop(f.name)
    return cls(**kwargs)
