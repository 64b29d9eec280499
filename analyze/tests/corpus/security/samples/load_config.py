"""An RL-sized sample (speed benchmark and agreement corpus)."""
import pickle
import yaml


def load_config(path):
    with open(path) as fh:
        if path.endswith(".yaml"):
            return yaml.load(fh)
        return pickle.load(fh)


def save_config(path, cfg):
    with open(path, "wb") as fh:
        pickle.dump(cfg, fh)
