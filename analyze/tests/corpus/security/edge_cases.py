"""Shapes where tree-sitter's tree and Python's ast differ."""
"/tmp/a tuple, not a docstring",
("/tmp/parenthesized statement is still an expression statement")
config["password",] = "slice tuple"
config["password", "x"] = "slice tuple"
config[("password")] = "parenthesized key"
x = ("/tmp"
     # a comment inside the concatenation
     "/dir")
y = "/tm" \
    "p/joined by a line continuation"
z = "\x2ftmp/escaped slash"
w = "\u0030.0.0.0"
v = r"\tmp"
u = u"/tmp/unicode prefix"
t = """
/tmp at the start of the second line
"""
s = """/tmp/multi
line"""
password = ("parenthesized value")
(password) = "parenthesized target"
password = """multi
line"""
match command:
    case "0.0.0.0":
        pass
    case "/tmp" | "/var/tmp":
        pass
    case _:
        pass
values = [1, "/tmp/in a list", {"k": "/dev/shm/in a dict"}]
lam = lambda host="0.0.0.0": host
result = "0.0.0.0" if cond else "/tmp"
print("/tmp" if cond else other, file=sys.stderr)
assert isinstance(x, str), "/tmp/in an assert message"
raise ValueError("/tmp/in a raise")
