"""Blacklisted calls, through aliases, from-imports and attribute chains."""
import pickle
import cPickle
import marshal as m
import dill
import shelve
import jsonpickle
import pandas as pd
from pickle import loads
from pickle import Unpickler as U
import Crypto.Hash.MD5
from Crypto.Cipher import DES, ARC4 as RC4
from Cryptodome.Hash import SHA
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import algorithms, modes
import tempfile
import random
from random import randint as ri
import telnetlib
import ftplib
from ftplib import FTP
import ssl
import urllib.request
from urllib.request import urlopen as uo
from six.moves import urllib as sixurllib
import xml.etree.ElementTree as ET
import xml.etree.cElementTree as cET
from xml.sax import expatreader
from xml.dom import expatbuilder, minidom, pulldom
import xml.sax
from django.utils.safestring import mark_safe

pickle.loads(data)
pickle.load(f)
pickle.dumps(obj)
loads(data)
U(f).load()
cPickle.loads(data)
m.loads(data)
m.dumps(obj)
dill.loads(data)
shelve.open("db")
jsonpickle.decode(s)
pd.read_pickle("x.pkl")
Crypto.Hash.MD5.new()
DES.new(key)
RC4.new(key)
SHA.new()
hashes.MD5()
hashes.SHA1()
hashes.SHA256()
algorithms.TripleDES(key)
algorithms.AES(key)
modes.ECB()
modes.CBC(iv)
tempfile.mktemp()
tempfile.mkstemp()
eval("1 + 1")
eval(expression)
ast.literal_eval("1")
mark_safe(html)
urllib.request.urlopen(url)
urllib.request.urlretrieve(url)
uo(url)
sixurllib.request.urlopen(url)
random.random()
random.randint(1, 10)
ri(1, 2)
random.SystemRandom().random()
random.choice(items)
random.Random(42)
random.seed(1)
telnetlib.Telnet("host")
ftplib.FTP("host")
FTP("host")
ftplib.FTP_TLS("host")
ssl._create_unverified_context()
ssl.create_default_context()
ET.parse("f.xml")
ET.fromstring(text)
ET.tostring(element)
cET.iterparse(f)
expatreader.create_parser()
expatbuilder.parseString(s)
xml.sax.parseString(s, handler)
xml.sax.make_parser()
minidom.parse(f)
pulldom.parseString(s)
__import__("pickle")
__import__("os")
__import__(name)
importlib.import_module("subprocess")
import importlib
importlib.import_module("telnetlib")
importlib.import_module("xml.sax")
importlib.__import__("ftplib")
importlib.import_module(name="pickle")
importlib.import_module(modname)
obj.pickle.loads(data)
self.random.random()
(pickle).loads(data)
pickle.loads(
    data
)
