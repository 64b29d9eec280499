"""More shapes: nesting, positions after non-ASCII text, decorators, annotations, slices."""
import os
import subprocess


def handler(): pass; os.system(cmd)


é = "ü"; eval(expression); os.system("ls")
msg = f"{os.system(cmd)} and {'0.0.0.0'} and {subprocess.call(c, shell=True)}"
nested = f"{f'/tmp/{x}'}"


@app.route("/tmp/upload")
def upload(path: "/tmp/annotated" = None) -> "/var/tmp/returned":
    return path


bind: "0.0.0.0" = address
part = data["/tmp":"/dev/shm"]
names = [n for n in items if n != "/tmp/filter"]
with open("/tmp/file") as fh:
    pass
if (password := "walrus"):
    pass


class Config(Base, password="class keyword"):
    password = "class attribute"


def outer():
    def inner(password="inner default"):
        # nosec
        return password
    return inner


def outer2(token="outer default"):
    def inner(x):
        return x  # nosec B105
    return inner


subprocess.call(cmd,
                shell=True) ; eval(x)
os.system(
    "ls"  # comment
    " -l"
)
os.system(  # nosec
    cmd
)
query = "SELECT a " \
        "FROM t WHERE b = " + b
query = "SELECT * FROM t WHERE a = %s AND b = %s" % (a, b)
query = "SELECT * FROM t WHERE a = " + a + " AND b = " + b + " ORDER BY " + c
cursor.execute("UPDATE t SET a = " + ("b" + c))
cursor.execute(("DELETE FROM t WHERE a = " + a) + " AND 1")
cursor.execute(prefix + "INSERT INTO t VALUES (" + v + ")")
cursor.execute("SELECT * FROM t".format())
mixed = ["0.0.0.0", *["/tmp"], {"password": "in list"}]
print(*("/tmp",), sep="0.0.0.0")
