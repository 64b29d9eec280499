"""An RL-sized sample (speed benchmark and agreement corpus)."""
import subprocess


def run(cmd):
    """Run a shell command and return its output."""
    result = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return result.stdout.strip()


if __name__ == "__main__":
    print(run("ls -l"))
