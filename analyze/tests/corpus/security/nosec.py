"""nosec comments: blanket, by ID, by name, on multi-line nodes, and ones that do not apply."""
import subprocess  # nosec
import pickle  # nosec B403
import telnetlib  # nosec B404

subprocess.call(cmd, shell=True)  # nosec
subprocess.call(cmd, shell=True)  # nosec B602
subprocess.call(cmd, shell=True)  # nosec: B602, B607
subprocess.call("ls", shell=True)  # nosec B602,B607
subprocess.call("ls", shell=True)  # nosec B607, B602
subprocess.call(cmd, shell=True)  # nosec subprocess_popen_with_shell_equals_true
subprocess.call(cmd, shell=True)  # nosec B603
subprocess.call(cmd, shell=True)  # nosec unknown_test
subprocess.call(cmd, shell=True)  # NOSEC
subprocess.call(cmd, shell=True)  # nosec b602
subprocess.call(cmd, shell=True)  # see #nosec B602 for why
subprocess.call(cmd, shell=True)  # TODO nosec
subprocess.call(
    cmd,
    shell=True,  # nosec
)
subprocess.call(
    cmd,  # nosec B602
    shell=True,
)
subprocess.call(
    cmd,
    shell=True,
)  # nosec
password = "hunter2"  # nosec
password = "hunter2"  # nosec B105
password = "hunter2"  # nosec hardcoded_password_string
password = "hunter2"  # nosec B106
pickle.loads(data)  # nosec pickle
pickle.loads(data)  # nosec import_pickle
assert x  # nosec assert_used
assert x  # nosec B101 B102
exec(code)  # nosec B102
creds = {
    "password": "x",  # nosec
}
creds = {
    "password": "x",
    "other": 1,  # nosec
}
query = ("SELECT * FROM t WHERE a = "  # nosec
         + a)


def connect(password="admin"):
    # nosec
    return password


def connect2(password="admin"):
    return password


try:
    work()
except Exception:  # nosec
    pass

try:
    work()
except Exception:
    pass  # nosec
