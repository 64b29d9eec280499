"""Trojan source: a bidirectional control character in the file."""
x = 1
access_level = "user‮ ⁦# admin⁩ ⁦"
if access_level != "none":
    pass
y = "‏"
