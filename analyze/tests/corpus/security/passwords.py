"""Hardcoded passwords: strings assigned, compared, keyed, passed or defaulted."""

password = "hunter2"
PASSWORD = "Hunter2"
db_password = "secret1"
password_hash = "abc"
user_token = 'tok'
secret = "s3cr3t"
secrete = "x"
passphrase = "correct horse"
pwd = "pw"
passwd = 'pw'
api_key = "not flagged"
passwords = "not flagged"
mypassword = "not flagged"
password = ""
password = f"formatted {x}"
password = b"bytes are not strings"
password = "con" "catenated"
password: str = "annotated assignments are not flagged"
password += "augmented assignments are not flagged"
a = password = "chained"
password = other = "chained too"
password, user = "tuple", "targets"
self.password = "attribute"
config.db.password = "nested attribute"
config["password"] = "subscript"
config["DB_PASSWORD"] = "env"
config["password"] = variable
config["password"], x = "a", "b"
os.environ["api_token"] = "t"
creds = {"password": "dict value"}
creds = {"password": 1234}
creds = {"password": None}
creds = {"password": True}
creds = {"password": b"bytes"}
creds = {"password": get()}
creds = {"user": "password"}
creds = {**defaults, "secret": "s"}
creds = {k: "v" for k in ["password"]}
if password == "root":
    pass
if password != "":
    pass
if self.token == "abc":
    pass
if "root" == password:
    pass
if password == get():
    pass
if password in ("a", "b"):
    pass
if password == "x" == "y":
    pass
login(password="blerg")
login(user="u", passwd="blerg", token="tok")
login(password=get_password())
login(password=None)
login(password=f"{x}")
login(**{"password": "kw"})
login(api_token="x"
      "y")


def connect(user, password="admin"):
    return user


def connect2(user, password=None, token="t"):
    return user


def connect3(password: str = "typed"):
    return 1


def connect4(a, /, password="posonly shift", *, token="kwonly"):
    return a


def connect5(password, pwd="p", *args):
    return 1


async def connect6(password="async is not a FunctionDef"):
    return 1


def connect7(user, password=b"bytes"):
    return 1


check = lambda password="lambda": password


class Client:
    password = "class attribute"

    def __init__(self, password="method default"):
        self.token = "attr in method"


def connect8(a="first", /, password="second"):
    return a


def connect9(user, *args: str, password="kwonly after typed star"):
    return user


def connect10(user: str, token: str = "typed positional"):
    return user
