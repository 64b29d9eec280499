"""YAML, tarfile, logging, paramiko, SNMP, PyTorch, Hugging Face."""
import yaml
import tarfile
import logging.config
import paramiko
from paramiko import client
from pysnmp.hlapi import CommunityData, UsmUserData
import torch
from transformers import AutoModel
from datasets import load_dataset
from huggingface_hub import hf_hub_download, snapshot_download

yaml.load(stream)
yaml.load(stream, Loader=yaml.SafeLoader)
yaml.load(stream, Loader=yaml.CSafeLoader)
yaml.load(stream, yaml.SafeLoader)
yaml.load(stream, SafeLoader)
yaml.load(stream, Loader=yaml.FullLoader)
yaml.load(stream, Loader=yaml.Loader)
yaml.safe_load(stream)
yaml.unsafe_load(stream)
other.load(stream)

t = tarfile.open("a.tgz")
t.extractall()
t.extractall(path="x")
t.extractall(members=safe_members(t))
t.extractall(members=members_list)
t.extractall(members=[m for m in t])
t.extractall(members=t.safe())
t.extractall(filter="data")
t.extractall(filter="tar")
t.extract("member")
tarfile.TarFile.extractall(t)

logging.config.listen(9999)
logging.config.listen(9999, verify=check)

ssh = paramiko.SSHClient()
ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
ssh.set_missing_host_key_policy(paramiko.WarningPolicy)
ssh.set_missing_host_key_policy(AutoAddPolicy())
ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
ssh.set_missing_host_key_policy(client.AutoAddPolicy)
ssh.exec_command("ls")
stdin, stdout, stderr = ssh.exec_command(cmd)

CommunityData("public", mpModel=0)
CommunityData("public", mpModel=1)
CommunityData("public", mpModel=2)
CommunityData("public")
UsmUserData("user")
UsmUserData("user", "authkey")
UsmUserData("user", "authkey", "privkey")

torch.load("model.pt")
torch.load("model.pt", weights_only=True)
torch.load("model.pt", weights_only=False)
torch.serialization.load(f)
torch.save(model, "m.pt")

AutoModel.from_pretrained("bert-base-uncased")
AutoModel.from_pretrained("bert-base-uncased", revision="main")
AutoModel.from_pretrained("bert-base-uncased", revision="5d0f2e8a7b")
AutoModel.from_pretrained("bert-base-uncased", revision="'abcdef1234'")
AutoModel.from_pretrained("bert-base-uncased", revision=rev)
AutoModel.from_pretrained("./local/model")
AutoModel.from_pretrained("/abs/model")
AutoModel.from_pretrained("bert", commit_id="abcdef1234567")
load_dataset("squad")
load_dataset("squad", revision="0123456789abcdef")
hf_hub_download(repo_id="x", filename="y")
snapshot_download("org/repo", revision=None)
other_lib.from_pretrained("x")
