"""Name resolution as Bandit does it: aliases apply from the import on, anywhere in the file."""

pickle.loads(data)
subprocess.call(cmd, shell=True)


def later():
    import subprocess as sp
    return sp


sp.call(cmd, shell=True)
sp.Popen("ls")
import os.path
os.system(cmd)
os.path.join("a", "b")
import os.path as osp
osp.join("/tmp", "x")
from os import popen as p
p(cmd)
from os import path as ospath, system as run
run("ls")
import xml.etree.ElementTree
xml.etree.ElementTree.parse(f)
import xml.etree as xe
xe.ElementTree.parse(f)
from xml import etree as e2
e2.ElementTree.fromstring(s)
e2.cElementTree.parse(f)
import Crypto.Cipher as CC
CC.DES.new(k)
from Crypto import Cipher as CI
CI.ARC2.new(k)
import yaml as y
y.load(s)
from yaml import load
load(s)
obj.subprocess.call(cmd, shell=True)
get_module().system(cmd)
modules["os"].system(cmd)
(lambda: os)().system(cmd)
os.system.__call__(cmd)
random = get_random()
random.random()


class Runner:
    import subprocess as runner_sp

    def go(self):
        runner_sp.call("x", shell=True)
        self.runner_sp.call("x", shell=True)


exec = print
exec("hello")
eval = safe_eval
eval("1")
