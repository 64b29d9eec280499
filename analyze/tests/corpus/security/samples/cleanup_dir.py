"""An RL-sized sample (speed benchmark and agreement corpus)."""
import os


def cleanup(directory, pattern):
    removed = 0
    for root, dirs, files in os.walk(directory):
        for name in files:
            if pattern in name:
                try:
                    os.remove(os.path.join(root, name))
                    removed += 1
                except OSError:
                    pass
    os.system("rm -rf " + directory + "/cache")
    return removed
