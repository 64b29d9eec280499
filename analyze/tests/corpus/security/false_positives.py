"""Near misses: calls that look like rule hits but resolve elsewhere, and unimported libraries."""
import os
import json
import subprocess_tools
from mypickle import loads
from safe import system


def f(x):
    if not x:
        raise ValueError("x")
    return x


loads(data)
system("ls")
json.loads(data)
execute = run
execute("SELECT * FROM t")
os.chmod(path, 0o600)
os.chmod(path, 0o700)
os.makedirs("tmpdir".replace("x", "y"), exist_ok=True)
host = "127.0.0.1"
api_key = "abc"
session_token_count = 3
if username == "admin":
    pass
subprocess_tools.call(cmd, shell=False)
popen(cmd)
os.getenv("PASSWORD")
msg = "Please select a file from the list"
msg = "update your settings"
hashlib.md5(data)
yaml.load(stream)
torch.load(path)
app.run(debug=True)
Environment(autoescape=False)
t.extractall()
ssh.set_missing_host_key_policy(AutoAddPolicy())
ssh.exec_command("ls")
Markup(x)
RawSQL(sql)
mark_safe(x)
AutoModel.from_pretrained("bert")
try:
    work()
except ValueError:
    pass
try:
    work()
finally:
    pass
