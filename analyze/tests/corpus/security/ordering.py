"""Python's ast visits a function's decorators and return annotation after its body: an import
in the body already renames what they call (Bandit has no scopes)."""
import os


def outer():
    @decorator(os.popen(cmd))
    def inner() -> os.system(cmd):
        import shelve as os
        return os.open("db")
    return inner


os.system(cmd)


@app.route("/tmp/upload")
def upload(path="/tmp/default") -> "/var/tmp/returned":
    return path
