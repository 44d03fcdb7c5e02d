"""How a params problem is said: one line per bad key, naming it and its value, with a "did you mean"."""

import difflib
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError


def unknown(loc: list[str], value: Any, root: type[BaseModel]) -> str:
    """An unknown key (a section: one no stage reads), with the known one it may be a misspelling of."""
    near = difflib.get_close_matches(loc[-1], known_keys(loc[:-1], root), n=1)
    what = "no stage reads it" if len(loc) == 1 else "unknown key"
    return f"  {'.'.join(loc)} = {value!r}: {what}" + (f" (did you mean {near[0]!r}?)" if near else "")


def describe(error: ValidationError, root: type[BaseModel], where: tuple[str, ...] = ()) -> str:
    """One line per problem; `root` is the whole file's model, `where` the key of what was validated."""
    lines = []
    for problem in error.errors():
        loc = [*where, *(str(part) for part in problem["loc"])]
        if loc and loc[-1].startswith(("function-after", "str")):  # pydantic's validator steps
            loc = loc[:-1]
        key = ".".join(loc)
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "missing":
            lines.append(f"  {key}: missing key")
        elif problem["type"] == "extra_forbidden":
            lines.append(unknown(loc, problem["input"], root))
        elif key and len(repr(problem["input"])) > 80:  # a whole section: the message says enough
            lines.append(f"  {key}: {message}")
        elif key:
            lines.append(f"  {key} = {problem['input']!r}: {message}")
        else:
            lines.append(f"  {message}")
    return "\n".join(lines)


def known_keys(loc: list[str], root: type[BaseModel]) -> list[str]:
    """The keys a section allows, for 'did you mean' hints."""
    model = root
    parts = iter(loc)
    for part in parts:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None) if field else None
        if get_origin(annotation) is dict:  # a table of sections (train.<model>): skip the name
            annotation = get_args(annotation)[1]
            if next(parts, None) is None:
                return []
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return list(model.model_fields)
