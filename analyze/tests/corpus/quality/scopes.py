"""Scope rules: what pyflakes resolves where, and what it leaves alone."""
import typing
import typing as t
from typing import cast, TypeVar, List, Literal, Annotated

T = TypeVar("T", bound="Bound")
U = TypeVar("U", "Constraint", int)
forward: List["Forward"] = []
literal: Literal["not_a_name"] = "not_a_name"
annotated: Annotated[int, "not_a_name_either"] = 1
aliased: t.Optional["AliasedForward"] = None
dotted: typing.Optional["DottedForward"] = None
casted = cast("CastTarget", None)


class Forward:
    pass


class Bound:
    pass


def uses_later_global():
    return LATER


LATER = 1


def conditional_delete(flag):
    value = 1
    if flag:
        del value
    return value


def loop_delete(items):
    for item in items:
        del item
    return items


def nested_scopes():
    outer_value = 1

    def middle():
        def inner():
            return outer_value + missing_inner

        return inner

    return middle


def shadowing(sum):
    total = sum
    return total


def augmented_undefined():
    undefined_counter += 1


def annotation_only():
    declared: int
    return declared


def name_error_guard():
    try:
        return maybe_defined
    except NameError:
        return None


def name_error_in_tuple():
    try:
        return also_maybe
    except (NameError, AttributeError):
        return None


def attribute_error_guard():
    try:
        return not_guarded
    except AttributeError:
        return None


class Meta(type):
    def __new__(mcs, name, bases, ns):
        return super().__new__(mcs, name, bases, ns)


class WithClassVars(metaclass=Meta):
    base = 1
    derived = [base + i for i in range(3)]
    pairs = {k: base for k in range(3)}
    lam = lambda self: base

    def uses_class_var(self):
        return base


def generator_leak():
    values = [v for v in range(3)]
    return v, values


def comprehension_shadow(v):
    return [v for v in range(v)]


def walrus_in_comprehension(items):
    if any((hit := x) > 2 for x in items):
        return hit
    return [last := y for y in items]


def unused_walrus_in_comprehension(items):
    return [z for z in items if (tmp := z)]


def redefined_by_loop():
    import json
    for json in range(3):
        pass
    return json


def redefined_import_in_function():
    import os
    import os
    return os


def try_else_redefinition():
    try:
        from json import loads
    except ImportError:
        loads = None
    else:
        pass
    return loads


def if_else_redefinition(flag):
    if flag:
        import json as codec
    elif flag is None:
        import pickle as codec
    else:
        codec = None
    return codec


def redefinition_in_finally():
    try:
        import json
    finally:
        import json
    return json


def match_bindings(value):
    match value:
        case {"k": captured}:
            return captured
        case [first, *others]:
            return first
        case str() as text:
            return text
        case _:
            unused_in_case = 1
    return None


def match_redefinition(value):
    match value:
        case 1:
            import json
        case 2:
            import json
        case _:
            json = None
    return json


class Properties:
    @property
    def size(self):
        return 1

    @size.setter
    def size(self, value):
        pass

    def size(self):
        return 2


def default_uses_later(x=later_default):
    return x


later_default = 1
print(__file__, __name__, __doc__, __builtins__, __debug__, WindowsError)
print(__path__)
