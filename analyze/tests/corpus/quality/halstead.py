"""Operators and operands as radon's HalsteadVisitor counts them."""


def arithmetic(a, b):
    c = a + b - a * b / 2 // 3 % 4 ** 2
    d = a @ b if hasattr(a, "__matmul__") else a
    e = (a << 1) | (b >> 2) & a ^ b
    f = -a + +b - ~a
    g = not a
    return c, d, e, f, g


def augmented(x):
    x += 1
    x -= 1.0
    x *= True
    x /= 0x1
    x //= 2
    x %= 3
    x **= 2
    x >>= 1
    x <<= 1
    x &= 7
    x |= 8
    x ^= 1
    x @= x
    return x


def comparisons(a, b, c):
    r1 = a < b <= c
    r2 = a == b != c
    r3 = a > b >= c
    r4 = a in b
    r5 = a not in b
    r6 = a is None
    r7 = a is not None
    r8 = not a in b
    return r1, r2, r3, r4, r5, r6, r7, r8


def booleans(a, b, c):
    first = a and b and c
    second = a or b or c
    mixed = a and b or c and a
    grouped = (a and b) and c
    right = a and (b and c)
    return first, second, mixed, grouped, right


def constants(x):
    same_number = x + 1 + 1.0 + True + 0x1 + 1e0
    zero = x - 0 - 0.0 - False - 0j - 0b0
    imaginary = x + 2j + 2
    strings = x + "ab" + "a" "b" + 'a' + 'b'
    escapes = x + "\x41" + "A" + "\u0041" + "\101" + r"\x41"
    raw_bytes = x + b"ab" + b"a" b"b" + rb"\n" + b"\n"
    formatted = x + f"{x + 1}" + f"{x!r:>{x}}" + "%s" % x
    names = x.name + name + "name" + x.other
    nones = x is None or x is ... or x == Ellipsis
    return same_number, zero, imaginary, strings, escapes, raw_bytes, formatted, names, nones


def contexts_a(x):
    return x + 1


def contexts_b(x):
    return x + 1


def contexts_a(x):  # noqa: F811 - same context name twice
    return x * 2


def nested(x):
    def inner(y):
        return y - x

    return inner(x) + 1


def not_counted(a=1 + 2, b=-1, *, c=not True) -> "int" if True else "str":
    return a


@staticmethod
def decorated(value=3 * 3):
    return value


level = 1 + 2 * 3
label = "level" + str(level)
assert level > 1 and level < 10, "range"


class Shape(object if level > 0 else type, metaclass=type):
    sides = 4 - 1
    area = sides * sides

    def scaled(self, factor=2 ** 8):
        return self.area * factor


def patterns(value):
    match value:
        case -1:
            return 0
        case 1 + 2j:
            return 1
        case -1 - 2j:
            return 2
        case {-3: x}:
            return x
        case Shape(sides=-4):
            return 3
        case [1, 2, *rest] if len(rest) > 2 and rest[0]:
            return rest
    return -value


lam = lambda a, b=1 + 1: a * b - (a if a > b else b)
gen = (i * i for i in range(10) if i % 2)

from typing import Dict, List, Literal, Optional

annotated: List[int] | None = None
alias: "Dict[str, int]" = {}


def annotations(x: Optional[int] | str = None) -> List[int] | None:
    local: Dict[str, int] | Literal["a", -1] = {}
    other: int | float | None = x
    return [local, other]
