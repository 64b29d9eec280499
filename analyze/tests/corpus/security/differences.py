"""Known, documented differences with Bandit (allowlisted in agreement_bandit.rs)."""
# The literal part of a format spec is a constant Bandit checks: we do not.
path = f"{directory:/tmp}"
# \N{...} needs Unicode's name table: Python reads "/tmp/x", we read U+FFFD "tmp/x".
cache = "\N{SOLIDUS}tmp/x"
