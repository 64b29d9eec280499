import os
import pickle
password = "crlf"
os.system(cmd)
pickle.loads(
    data)  # nosec
assert x
