"""Hashes, TLS versions, certificate checks, key sizes."""
import hashlib
import hashlib as hl
from hashlib import md5, sha1 as s1
import crypt
import ssl
import requests
import httpx
from OpenSSL import SSL
from cryptography.hazmat.primitives.asymmetric import dsa, rsa, ec
from Crypto.PublicKey import DSA, RSA
from Cryptodome.PublicKey import RSA as RSA2

hashlib.md5(data)
hashlib.md5(data, usedforsecurity=False)
hashlib.md5(data, usedforsecurity=True)
hashlib.sha1(data, usedforsecurity=flag)
hl.sha1()
md5()
s1(b"x")
hashlib.sha256(data)
hashlib.new("md5")
hashlib.new("MD4", data)
hashlib.new("sha256")
hashlib.new(name="sha1")
hashlib.new(algo)
hashlib.new("md5", usedforsecurity=False)
crypt.crypt(pw, crypt.METHOD_MD5)
crypt.crypt(pw, salt=crypt.METHOD_CRYPT)
crypt.crypt(pw, crypt.METHOD_SHA512)
crypt.mksalt(crypt.METHOD_BLOWFISH)
crypt.mksalt(method=crypt.METHOD_MD5)
crypt.mksalt()
requests.get(url, verify=False, timeout=3)
requests.post(url, verify=True, timeout=3)
requests.get(url,
             timeout=3,
             verify=False)
httpx.Client(verify=False)
httpx.AsyncClient(verify=False)
httpx.get(url, verify=False)
ssl.wrap_socket(sock)
ssl.wrap_socket(sock, ssl_version=ssl.PROTOCOL_SSLv2)
ssl.wrap_socket(sock, ssl_version=ssl.PROTOCOL_TLSv1_2)
ssl.wrap_socket(sock, ssl_version=version)
SSL.Context(method=SSL.SSLv3_METHOD)
SSL.Context(SSL.TLSv1_2_METHOD)
import pyOpenSSL
pyOpenSSL.SSL.Context(method=pyOpenSSL.SSL.SSLv2_METHOD)
ssl.SSLContext(ssl_version=ssl.PROTOCOL_TLSv1)
some_function(method="SSLv23_METHOD")
other_function(ssl_version=PROTOCOL_TLSv1_1)


def open_connection(version=ssl.PROTOCOL_SSLv3, other=1):
    return version


def open_connection2(host, method=SSL.TLSv1_METHOD):
    return host


def open_connection3(version=ssl.PROTOCOL_TLS_CLIENT):
    return version


dsa.generate_private_key(1024)
dsa.generate_private_key(key_size=2048)
dsa.generate_private_key(4096)
rsa.generate_private_key(65537, 1024)
rsa.generate_private_key(public_exponent=65537, key_size=2000)
rsa.generate_private_key(65537, 4096)
rsa.generate_private_key(65537, size)
rsa.generate_private_key(65537)
ec.generate_private_key(ec.SECP192R1)
ec.generate_private_key(curve=ec.SECT163K1)
ec.generate_private_key(ec.SECP384R1())
ec.generate_private_key(ec.SECP256R1)
DSA.generate(512)
RSA.generate(bits=1024)
RSA.generate(2048)
RSA.generate(3072)
RSA2.generate(1536)
RSA.generate(1024.5)
RSA.generate([1024])
