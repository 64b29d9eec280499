"""An RL-sized sample (speed benchmark and agreement corpus)."""
import hashlib
import random
import string


def make_token(length=16):
    alphabet = string.ascii_letters + string.digits
    return "".join(random.choice(alphabet) for _ in range(length))


def hash_password(password, salt=None):
    salt = salt or make_token(8)
    digest = hashlib.md5((salt + password).encode()).hexdigest()
    return salt + "$" + digest
