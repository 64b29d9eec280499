"""A star import hides undefined names; `__all__` entries it may define mark it used."""
from os.path import *
from json import *

__all__ = ["join", "missing_export"]


def uses_star():
    return exists("x") and undefined_here


class AfterStar:
    name = __qualname__
