"""Whether generated Python parses, shared by the generation benchmarks."""
import ast
import warnings

warnings.simplefilter("ignore")


def parses(code):
    """Python's own parser accepts `code`."""
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError):
        return False


def has_code(completion):
    """Anything but comments and blank lines: a model stuck in comment lines "parses" trivially."""
    return any(line.split("#", 1)[0].strip() for line in completion.splitlines())
