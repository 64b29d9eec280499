"""Load `anvil serve` with concurrent clients and report requests/s, tokens/s and latency.

Usage: python3 scripts/bench/serve_throughput.py --anvil BIN --checkpoint CKPT
           [--clients 16] [--requests 64] [--max-tokens 32] [--n 1] [--batch-rows 1,32]

Starts one server per --batch-rows value (on a free loopback port), sends the same requests
(greedy-free sampling with a per-request seed, end of sequence ignored so every request costs
the same), and prints one line per server. Standard library only.
"""

import argparse
import json
import subprocess
import threading
import time
import urllib.request


def run(a, batch_rows):
    proc = subprocess.Popen(
        [a.anvil, "serve", "--checkpoint", a.checkpoint, "--addr", "127.0.0.1:0",
         "--batch-rows", str(batch_rows), "--queue", "1024"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = None
        for line in proc.stdout:
            if "listening on" in line:
                url = line.split("listening on", 1)[1].strip()
                break
        if url is None:
            raise SystemExit("the server did not start")
        lat, tokens, lock, nxt = [], [0], threading.Lock(), [0]

        def client():
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= a.requests:
                    return
                body = json.dumps({"prompt": f"def f_{i}(x):", "max_tokens": a.max_tokens,
                                   "temperature": 0.8, "seed": i, "n": a.n,
                                   "ignore_eos": True}).encode()
                t = time.perf_counter()
                req = urllib.request.Request(url + "/v1/completions", body,
                                             {"Content-Type": "application/json"})
                with urllib.request.urlopen(req) as r:
                    v = json.load(r)
                with lock:
                    lat.append(time.perf_counter() - t)
                    tokens[0] += v["usage"]["completion_tokens"]

        t0 = time.perf_counter()
        ts = [threading.Thread(target=client) for _ in range(a.clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        el = time.perf_counter() - t0
        lat.sort()
        print(f"batch-rows {batch_rows:>3}: {a.requests} requests x {a.max_tokens} tokens x n {a.n}, "
              f"{a.clients} clients: {a.requests / el:6.1f} requests/s, {tokens[0] / el:7.0f} tokens/s, "
              f"latency p50 {lat[len(lat) // 2]:.2f} s p99 {lat[len(lat) * 99 // 100]:.2f} s")
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--anvil", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--batch-rows", default="1,32")
    a = ap.parse_args()
    for b in a.batch_rows.split(","):
        run(a, int(b))


if __name__ == "__main__":
    main()
