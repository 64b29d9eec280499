"""General rules: assert, exec, chmod, bind-all, temp dirs, try/except, requests timeouts.

A docstring mentioning /tmp and 0.0.0.0 is not flagged: Bandit skips expression statements.
"""
import os
import stat
import requests as rq
from os import chmod as change_mode

"/tmp/docstring-like statement is skipped"


def check(x):
    assert x > 0, "x must be positive"
    assert isinstance(x, int)
    return x


exec("print(1)")
exec(compile("x = 1", "<s>", "exec"))
os.chmod("/etc/passwd", 0o777)
os.chmod("script.sh", 0o750)
os.chmod(path, 0o644)
os.chmod(path, stat.S_IRWXU | stat.S_IRWXO)
os.chmod(path, 511)
change_mode(some_file, 0o757)
os.fchmod(fd, 0o070)
os.chmod(path)
os.chmod(path, 0o777, follow_symlinks=False)
os.chmod(["a", "b"], 0o771)
x.chmod(p, 0o666)

host = "0.0.0.0"
server.bind(("0.0.0.0", 8080))
not_all = "0.0.0.0:8080"
log_path = "/tmp/app.log"
cache = "/var/tmp" + "/cache"
shm = os.path.join("/dev/shm", "x")
temporary = "/tmpfoo"
other = "/home/tmp"

try:
    work()
except:
    pass

try:
    work()
except Exception:
    pass

try:
    work()
except Exception as e:
    pass

try:
    work()
except ValueError:
    pass

try:
    work()
except (Exception):
    pass

try:
    work()
except (ValueError, TypeError):
    pass

try:
    work()
except Exception:
    pass  # trailing comment
    # another comment inside the block

try:
    work()
except Exception:
    log(1)
    pass

for item in items:
    try:
        work(item)
    except Exception:
        continue
    try:
        work(item)
    except KeyError:
        continue
    try:
        work(item)
    except:
        continue

rq.get("https://example.com")
rq.get("https://example.com", timeout=5)
rq.post(url, data=payload, timeout=None)
rq.put(url, timeout=compute_timeout())
rq.delete(url, timeout=cfg.timeout)
rq.request("GET", url)
rq.Session().get(url)
requests.get(url)
import requests
requests.head(url)
requests.patch(url, timeout=t)
import httpx
httpx.get(url)
httpx.get(url, timeout=None)
httpx.Client(timeout=None)
httpx.stream("GET", url, timeout=10)
