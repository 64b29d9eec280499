"""Module docstring.

With a blank line inside.
"""
# A comment line.
#: Another one, right after.

import os  # trailing comment


CONSTANT = 1; OTHER = 2
EMPTY = {}
SLICE = [1, 2, 3][1:2]
PAIRS = {"a": 1, "b": 2}
LAMBDA = lambda x: x
ANNOTATED: int = 3
WALRUS = (y := 4)


def one_liner(x): return x


def body(x):
    """One-line docstring."""
    if x: return 1
    if x:  # comment after colon
        pass
    else: x = 2; x += 1
    try: x = 1 / x
    except ZeroDivisionError: pass
    return x


def strings():
    """
    Multi-line docstring

    with blank lines and \"quotes\" and '''triple''' inside.
    """
    text = """first
    second

    fourth"""
    raw = r"""a\b
    c"""
    single = 'it\'s'
    continued = "abc\
def"
    formatted = f"{text!r:>10} {raw}"
    joined = ("a"
              "b"  # inside brackets
              # a comment-only line inside brackets
              "c")
    """Not a docstring but a lone string statement."""
    '''Lone
    multi-line string.'''
    return text, raw, single, continued, formatted, joined


def continuation(a,
                 b):
    total = a + \
        b
    if (a and
            b):
        total += 1
    return total


    
x = 1

# form feed above
y = [
    1,

    2,
]
z = """
"""  # string then comment
class K: pass
for i in range(2): print(i)
while False: break
with open(os.devnull) as fh: fh.read()
