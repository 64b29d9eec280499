"""Every decision point radon's ComplexityVisitor counts, and the ones it does not."""
import functools


def plain():
    return 1


def branches(a, b, c):
    if a:
        return 1
    elif b:
        return 2
    elif c:
        pass
    else:
        return 3
    return 0 if a else (1 if b else 2)


def loops(items):
    total = 0
    for item in items:
        total += item
    else:
        total -= 1
    while total > 10:
        total //= 2
    while total:
        total -= 1
        if total == 3:
            break
    else:
        pass
    async_like = [x for x in items]
    return total, async_like


def booleans(a, b, c, d):
    if a and b and c:
        return 1
    if a or b and c or d:
        return 2
    if (a and b) and (c or d):
        return 3
    if not (a and not b):
        return 4
    return a and b or c


def comprehensions(rows):
    flat = [x for row in rows for x in row if x if x > 1]
    evens = {x for x in flat if x % 2 == 0}
    index = {k: v for k, v in enumerate(flat) if v}
    total = sum(x * 2 for x in flat)
    nested = [[y for y in row if y] for row in rows]
    return flat, evens, index, total, nested


def handlers(path):
    try:
        f = open(path)
    except FileNotFoundError:
        return None
    except (PermissionError, IsADirectoryError) as err:
        raise RuntimeError(path) from err
    else:
        data = f.read()
    finally:
        print("done")
    try:
        pass
    finally:
        pass
    with open(path) as f, open(path) as g:
        return data, f, g


def asserts(x, y):
    assert x
    assert x and y, "both"
    assert all(v for v in y if v)
    return x


def lambdas(xs):
    key = lambda v: v if v else -v
    pick = lambda v, w=(1 if xs else 2): v or w
    return sorted(xs, key=key), pick


def defaults(a=1 if True else 2, b=[x for x in range(3) if x]):
    return a, b


@functools.lru_cache(maxsize=None if True else 8)
def decorated(n):
    return n and decorated(n - 1)


def outer(n):
    def inner(m):
        if m:
            return m
        return n

    class Local:
        def method(self):
            if n:
                return 1

    if n > 1:
        return inner(n)
    return inner


def walrus(data):
    if (n := len(data)) > 10:
        return n
    return [y for x in data if (y := x * 2)]


def match_command(command):
    match command.split():
        case [action]:
            return action
        case [action, obj] if obj:
            return action, obj
        case ["go", ("north" | "south") as direction]:
            return direction
        case {"x": x, **rest}:
            return x, rest
        case Point(x=0, y=0):
            return "origin"
        case _:
            return None


def match_capture(value):
    match value:
        case 1 | 2:
            return "small"
        case (other):
            return other


def match_no_default(value):
    match value:
        case int():
            return 1
        case str() | bytes():
            return 2


def match_only_default(value):
    match value:
        case _:
            return value


def try_star(tasks):
    try:
        pass
    except* ValueError:
        return 1
    except* TypeError as group:
        return group
    else:
        return 0


class Point:
    x = 0
    y = 0 if x else 1

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def dist(self, other):
        if other is None:
            return 0
        return ((self.x - other.x) ** 2 + (self.y - other.y) ** 2) ** 0.5

    if True:
        def maybe(self):
            return self.x or self.y

    class Inner:
        def deep(self):
            if self:
                return 1
            return 2

    @property
    def norm(self):
        return abs(self.x) + abs(self.y)


class Empty:
    pass


class OnlyAttrs:
    a = 1 if Empty else 2
    b = [i for i in range(3) if i]


class OneMethod(Point):
    def only(self):
        for _ in range(3):
            if self.x:
                return True
        return False


if __name__ == "__main__":
    def main():
        return 0

    class Script:
        def run(self):
            return main()
else:
    try:
        def fallback():
            return None
    except ImportError:
        pass

for i in range(3):
    if i:
        print(i)
