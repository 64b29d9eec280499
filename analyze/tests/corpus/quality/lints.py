"""Lints pyflakes reports, and traps it does not flag."""
from __future__ import annotations

import os
import sys
import json as jsn
import os.path
import collections.abc
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Optional, overload
from functools import reduce, partial as part

if TYPE_CHECKING:
    from decimal import Decimal

try:
    import ujson as fastjson
except ImportError:
    fastjson = None

try:
    from collections import OrderedDict
except ImportError:
    OrderedDict = dict

__all__ = ["exported", "jsn", "not_defined_anywhere"]
__all__ += ["also_exported"]


def exported():
    return os.sep


def also_exported(value: Optional[Decimal]) -> "Decimal":
    return value


def unused_locals(items):
    unused = 1
    first, second = items[0], items[1]
    a, b = 1, 2
    (c, d) = [3, 4]
    [e, *f] = items
    g = h = 5
    _ = 6
    counter = 0
    counter += 1
    with open(os.devnull) as handle:
        pass
    with open(os.devnull) as (fd1, fd2):
        pass
    for index in range(3):
        pass
    if (length := len(items)) > 2:
        pass
    annotated: int = 7
    only_annotated: int
    __tracebackhide__ = True
    return first


def used_locals(items):
    total = 0
    for item in items:
        total += item
    result = total
    del result
    kept = 1

    def closure():
        return kept

    return closure


def uses_locals():
    hidden = 1
    return locals()


def undefined_names():
    print(missing_name)
    return undefined_call() + len(sys.argv)


def except_names():
    try:
        pass
    except ValueError as unused_error:
        pass
    except TypeError as used_error:
        print(used_error)
    return used_error


def global_names():
    global created_later
    created_later = 1
    return created_later


def nonlocal_names():
    count = 0

    def bump():
        nonlocal count
        count += 1

    bump()
    return count


def local_before_assignment():
    print(jsn)
    jsn = 1
    return jsn


class Scoped:
    attr = 1
    other = attr + 1
    listed = [attr for _ in range(3)]
    import re

    def method(self):
        return attr

    def method(self):
        return __class__

    def qualname(self):
        return self.__module__

    name = __qualname__

    @property
    def value(self):
        return 1

    @value.setter
    def value(self, new):
        self._value = new


@overload
def over(x: int) -> int: ...
@overload
def over(x: str) -> str: ...
def over(x):
    return x


def redefined():
    return 1


def redefined():
    return 2


redefined_var = 1
redefined_var = 2


def sys():
    return "shadows the import"


if os.name == "nt":
    def platform():
        return "windows"
else:
    def platform():
        return "posix"


def shadowed_by_argument(reduce):
    return reduce


del part
del never_bound
if os.name:
    del also_never_bound


def delete_then_use():
    value = 1
    del value
    return value


comprehension_scope = [n for n in range(3)]
print(n)
generator_scope = {k: v for k, v in {}.items()}
print(k)


def string_annotations(arg: "collections.abc.Sequence[Unknown]") -> "ET.Element":
    return arg


def type_comments_ignored(arg):
    return arg


lambda_default = lambda x=undefined_default: x
print(chain)
