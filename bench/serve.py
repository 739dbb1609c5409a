"""Serving throughput and latency: `textlstm serve` with micro-batching against the same server
running one request at a time (`--no-batching`), measured in one run, on loopback only.

Usage: python bench/serve.py MODEL [DATA_ROOT] [--seconds S] [--requests N] [--clients 1,8,32]
MODEL is a run folder or an ONNX export (`textlstm export`). Requests each carry one IMDB test
review (DATA_ROOT holds stanfordnlp/imdb; default TEXTLSTM_DATA_DIR). Each server is started in
its own process on 127.0.0.1 and warmed up; at each level of concurrency, that many clients
(asyncio + httpx, one connection each) send requests back to back for S seconds or N requests in
all, whichever comes first. The table gives requests/s, p50 and p99 latency, and for the batched
server its ratio to the baseline and its mean batch size (from /metadata).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def imdb_texts(root: str | None, count: int = 5000) -> list[str]:
    import pyarrow.parquet as pq

    if not root:
        sys.exit("bench/serve.py needs DATA_ROOT (or TEXTLSTM_DATA_DIR) holding stanfordnlp/imdb")
    files = sorted(Path(root, "stanfordnlp", "imdb").rglob("test-*.parquet"))
    if not files:
        sys.exit(f"{root}: no stanfordnlp/imdb test split (see bench/README.md)")
    return pq.read_table(files[0], columns=["text"]).column("text").to_pylist()[:count]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(model: str, port: int, extra: list[str]) -> subprocess.Popen:
    argv = [sys.executable, "-m", "textlstm", "serve", model, "--port", str(port), *extra]
    server = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server stopped: {server.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    sys.exit("the server did not start within 180 s")


async def load(url: str, texts: list[str], clients: int, seconds: float, limit: int):
    """(requests done, seconds, latencies) with ``clients`` concurrent clients."""
    latencies: list[float] = []
    sent = 0
    end = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.perf_counter() < end and sent < limit:
            text = texts[sent % len(texts)]
            sent += 1
            began = time.perf_counter()
            response = await http.post("/predict", json={"text": text})
            response.raise_for_status()
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return len(latencies), time.perf_counter() - began, latencies


def measure(model, texts, levels, seconds, limit, extra) -> dict[int, dict]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start(model, port, extra)
    try:
        asyncio.run(load(url, texts, 4, 5, 40))  # warm up
        rows = {}
        for clients in levels:
            before = httpx.get(f"{url}/metadata").json()["batches"]
            done, spent, latencies = asyncio.run(load(url, texts, clients, seconds, limit))
            after = httpx.get(f"{url}/metadata").json()["batches"]
            latencies.sort()
            rows[clients] = {
                "rps": done / spent,
                "p50": statistics.median(latencies) * 1000,
                "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
                "requests": done,
                "batch": (after["texts"] - before["texts"])
                / max(after["batches"] - before["batches"], 1),
            }
            print(f"  {clients:>3} clients: {rows[clients]['rps']:,.1f} requests/s", flush=True)
        return rows
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data", nargs="?", default=os.environ.get("TEXTLSTM_DATA_DIR"))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--clients", default="1,8,32")
    args = parser.parse_args()
    texts = imdb_texts(args.data)
    levels = [int(c) for c in args.clients.split(",")]
    print(f"{args.model}; {len(texts):,} IMDB test reviews, one per request; {os.cpu_count()} CPUs")
    print("one request at a time (--no-batching):", flush=True)
    alone = measure(args.model, texts, levels, args.seconds, args.requests, ["--no-batching"])
    print("micro-batched (defaults: up to 64 texts, 5 ms wait):", flush=True)
    batched = measure(args.model, texts, levels, args.seconds, args.requests, [])
    print()
    print(
        f"{'clients':>7} {'server':>14} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'mean batch':>10} {'vs one at a time':>17}"
    )
    for clients in levels:
        for name, rows in (("one at a time", alone), ("batched", batched)):
            row = rows[clients]
            ratio = row["rps"] / alone[clients]["rps"]
            print(
                f"{clients:>7} {name:>14} {row['rps']:>11,.1f} {row['p50']:>8,.0f} "
                f"{row['p99']:>8,.0f} {row['batch']:>10,.1f} {ratio:>16.2f}x"
            )


if __name__ == "__main__":
    main()
