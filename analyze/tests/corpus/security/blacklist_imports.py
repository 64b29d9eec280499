"""Blacklisted imports: prefixes, from-imports, relative imports, one finding per statement."""
from __future__ import annotations
import telnetlib
import ftplib
import pickle
import cPickle
import dill
import shelve
import pickletools
import subprocess
import subprocess32
import xml.etree.cElementTree
import xml.etree.ElementTree as ET
import xml.sax
import xml.dom.expatbuilder
import xml.dom.minidom
import xml.dom.pulldom
import xmlrpc.client
import xmlrpc
import pyghmi
import Crypto.Cipher.AES
import Crypto
import Cryptodome.Cipher
import xml
import xml.etree
import os, pickle, subprocess
import subprocess, pickle
from os import path
from pickle import loads
from xml import etree
from xml.etree import ElementTree
from xml.etree import cElementTree as c
from xml.dom import minidom, pulldom
from xmlrpc import server
from wsgiref.handlers import CGIHandler
from twisted.web.twcgi import CGIScript, CGIDirectory
from Crypto import Cipher
from Crypto.PublicKey import RSA
from Crypto import Random as R
from . import pickle
from .subprocess import call
from .. import telnetlib as t
from ftplib import *


def f():
    import subprocess
    from shelve import open as sopen
