"""How a params problem is said: one line per bad key, naming it and its value, with a "did you mean"."""

import difflib
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError


def unknown(loc: list[str], value: Any, schema: Any, where: tuple[str, ...] = ()) -> str:
    """An unknown key (a section: one no stage reads), with the known one it may be a misspelling of.

    `loc` is the key's path within `schema` (what was validated), `where` the path of that in the file.
    """
    near = difflib.get_close_matches(loc[-1], known_keys(loc[:-1], schema), n=1)
    what = "no stage reads it" if len(where) + len(loc) == 1 else "unknown key"
    return f"  {'.'.join([*where, *loc])} = {value!r}: {what}" + (f" (did you mean {near[0]!r}?)" if near else "")


def describe(error: ValidationError, schema: Any, where: tuple[str, ...] = ()) -> str:
    """One line per problem; `schema` is what was validated, `where` its key in the file."""
    lines = []
    for problem in error.errors():
        loc = [str(part) for part in problem["loc"]]
        if loc and loc[-1].startswith(("function-after", "str")):  # pydantic's validator steps
            loc = loc[:-1]
        key = ".".join([*where, *loc])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "missing":
            lines.append(f"  {key}: missing key")
        elif problem["type"] == "extra_forbidden":
            lines.append(unknown(loc, problem["input"], schema, where))
        elif key and len(repr(problem["input"])) > 80:  # a whole section: the message says enough
            lines.append(f"  {key}: {message}")
        elif key:
            lines.append(f"  {key} = {problem['input']!r}: {message}")
        else:
            lines.append(f"  {message}")
    return "\n".join(lines)


def known_keys(loc: list[str], schema: Any) -> list[str]:
    """The keys the section at `loc` within `schema` allows, for 'did you mean' hints."""
    for part in loc:
        if get_origin(schema) is dict:  # a table of sections (train.<model>): skip the name
            schema = get_args(schema)[1]
        elif isinstance(schema, type) and issubclass(schema, BaseModel) and part in schema.model_fields:
            schema = schema.model_fields[part].annotation
        else:
            return []
    return list(schema.model_fields) if isinstance(schema, type) and issubclass(schema, BaseModel) else []
