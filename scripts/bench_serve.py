"""charrnn serve under load: streaming clients against `charrnn serve` in a process of its own.

For each model (GRU 2x256 and 2x512 by default, random weights, V=65) and each number of
concurrent streaming clients (1, 4, 16, 64, 256), every client sends request after request
(max_tokens characters each, temperature 1, a new seed each) for a warm-up and then a measured
window: total characters/s received, per stream, against one client (the same requests served
one at a time); time to first character (from sending the request, for first characters in
the window) and the gap between chunks, p50 and p99; the server's and the clients' CPU use.

The arithmetic limit is this machine's float32 matrix-product peak on one thread
(scripts/bench.py's gemm_peak: the engine loop is one thread) over the model's floating-point
operations per character when sampling (one-hot input: layer 0 gathers a row; each product 2
flops a weight). Memory: the server's RSS with N streams live, less idle (a fresh server,
before the load levels), per stream, against the batch's own bytes a row
(charrnn.batching.Batch.row_bytes) and the state's. The clients are a small raw-socket HTTP
client here (asyncio), so that they take little of the CPU the server shares with them.

Usage: python scripts/bench_serve.py [--quick] [--json FILE]; results go to stdout.
"""
import argparse
import asyncio
import json
import os
import platform
import random
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from bench import gemm_peak

from charrnn.cells import REGISTRY

CONFIGS = {"gru-2x256": ("gru", 2, 256), "gru-2x512": ("gru", 2, 512)}  # cell, layers, H
V = 65
PROMPT = "THE QUICK BROWN FOX "  # each request's prompt (the vocabulary: "\n", 32-95)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = p.add_argument
    add("--configs", default=",".join(CONFIGS), help=f"Any of {', '.join(CONFIGS)}.")
    add("--clients", default="1,4,16,64,256", help="Numbers of concurrent streaming clients.")
    add("--seconds", type=float, default=10.0, help="Measured window per level.")
    add("--warmup", type=float, default=3.0, help="Seconds of load before the window.")
    add("--max-tokens", type=int, default=2000, help="Characters each request asks for.")
    add("--memory-streams", type=int, default=256, help="Live streams for the memory figure.")
    add("--quick", action="store_true",
        help="A short check that everything runs: gru-2x256, 1 and 4 clients, 2 s windows.")
    add("--json", metavar="FILE", help="Also write every number here as JSON.")
    args = p.parse_args()
    if args.quick:
        args.configs, args.clients, args.seconds, args.warmup = "gru-2x256", "1,4", 2.0, 1.0
        args.memory_streams, args.max_tokens = 8, 500
    args.configs = args.configs.split(",")
    args.clients = [int(c) for c in args.clients.split(",")]
    if set(args.configs) - set(CONFIGS):
        p.error(f"unknown configs in {args.configs}; choose from {', '.join(CONFIGS)}")
    return args


def sample_flops(name):
    """Floating-point operations a sampled character costs in the products: each layer's
    W_hh, W_ih above layer 0 (layer 0 gathers one row of it), the decoder."""
    cell, L, H = CONFIGS[name]
    G = REGISTRY[cell].G
    return 2 * G * H * H * (2 * L - 1) + 2 * H * V


def make_run(name, root):
    """A run directory holding the config's model, random weights, V = 65."""
    from charrnn import CharRNN, ModelConfig, Vocab
    from charrnn.checkpoint import save_model
    cell, L, H = CONFIGS[name]
    model = CharRNN(ModelConfig(vocab_size=V, cell=cell, hidden_size=H, num_layers=L),
                    dtype=np.float32)
    run = os.path.join(root, name)
    os.makedirs(run)
    save_model(os.path.join(run, "best.ckpt"), model,
               Vocab("\n" + "".join(map(chr, range(32, 96)))))
    return run


def row_bytes(run):
    """(the state's bytes a stream, the batch's bytes a row): charrnn.batching's own count."""
    from charrnn.batching import Batch
    from charrnn.sampling import Sampler
    sampler = Sampler.load(run)
    batch = Batch(sampler)
    cfg = sampler.model.config
    state = cfg.num_layers * cfg.hidden_size * (2 if cfg.spec.carries_c else 1) * 4
    return state, batch.row_bytes()


# --- the server -------------------------------------------------------------------------------
class Server:
    """`charrnn serve RUN` in its own process on 127.0.0.1, at a free port."""

    def __init__(self, run, max_streams, max_tokens):
        cmd = [sys.executable, "-m", "charrnn", "serve", run, "--port", "0",
               "--max-streams", str(max_streams), "--max-queue", str(max_streams),
               "--max-tokens", str(max_tokens)]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        for line in self.proc.stderr:
            found = re.search(r"at http://([\d.]+):(\d+)", line)
            if found:
                self.host, self.port = found.group(1), int(found.group(2))
                break
            log(line.rstrip())
        else:
            raise SystemExit("error: charrnn serve did not start")
        # its later lines pass through (a pipe nobody reads would fill and stall the server)
        threading.Thread(target=lambda: [log(line.rstrip()) for line in self.proc.stderr],
                         daemon=True).start()
        self.name = os.path.basename(run)

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))

    def cpu(self):
        """Seconds of CPU the server has used."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def health(self):
        return asyncio.run(get_json(self.host, self.port, "/health"))["models"][self.name]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


async def get_json(host, port, path):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


async def stream(host, port, body, on_text):
    """POST body (stream: true) and call on_text(seconds, characters) for every chunk with
    text, until [DONE]. A small HTTP/1.1 client: uvicorn's chunked encoding, one event a
    chunk."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        data = json.dumps(body).encode()
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % len(data) + data)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            status, body = head.splitlines()[0].decode(), (await reader.read()).decode()
            raise SystemExit(f"error: the server answered {status}: {body}")
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                return
            for event in (await reader.readexactly(size + 2))[:-2].split(b"\n\n"):
                if event.startswith(b"data: {"):
                    n = sum(len(c["text"]) for c in json.loads(event[6:])["choices"])
                    if n:
                        on_text(time.perf_counter(), n)
    finally:
        writer.close()


# --- one load level ------------------------------------------------------------------------------
async def load(server, clients, warmup, seconds, max_tokens):
    """C clients sending request after request: the window's characters, its first
    characters' times since their requests were sent, the gaps between chunks in it, and
    the CPU each side used."""
    start = time.perf_counter() + warmup
    end = start + seconds
    chars, ttft, gaps = [0], [], []

    async def client(seed):
        rng = random.Random(seed)
        while time.perf_counter() < end:
            sent, last = time.perf_counter(), [None]

            def on_text(t, n):
                if start <= t < end:
                    chars[0] += n
                    if last[0] is None:
                        ttft.append(t - sent)
                    elif last[0] >= start:
                        gaps.append(t - last[0])
                last[0] = t
            body = {"model": server.name, "prompt": PROMPT, "max_tokens": max_tokens,
                    "temperature": 1.0, "seed": rng.randrange(2**31), "stream": True}
            await stream(server.host, server.port, body, on_text)

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    await asyncio.sleep(max(start - time.perf_counter(), 0))
    cpu0, mine0 = server.cpu(), resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(max(end - time.perf_counter(), 0))
    cpu1, mine1 = server.cpu(), resource.getrusage(resource.RUSAGE_SELF)
    await stop(tasks)
    mine = (mine1.ru_utime + mine1.ru_stime) - (mine0.ru_utime + mine0.ru_stime)
    return chars[0], ttft, gaps, (cpu1 - cpu0) / seconds, mine / seconds


def quantile(xs, q):
    return float(np.quantile(xs, q)) if xs else None


def wait_idle(server, limit=60):
    deadline = time.monotonic() + limit
    while server.health() != {"streams": 0, "waiting": 0}:
        if time.monotonic() > deadline:
            raise SystemExit("error: the server did not let go of its streams")
        time.sleep(0.1)


async def hold(server, n, max_tokens):
    """n live streams, read as they come: the server's RSS with them, in bytes."""
    tasks = [asyncio.create_task(stream(server.host, server.port,
                                        {"model": server.name, "prompt": PROMPT,
                                         "max_tokens": max_tokens, "stream": True,
                                         "seed": i}, lambda t, c: None)) for i in range(n)]
    deadline = time.monotonic() + 60
    while (await get_json(server.host, server.port, "/health"))["models"][server.name][
            "streams"] < n:
        if any(task.done() for task in tasks) or time.monotonic() > deadline:
            await stop(tasks)
            raise SystemExit("error: the streams did not all go live")
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    rss = statistics.median([server.rss() for _ in range(5)])
    await stop(tasks)
    return rss


async def stop(tasks):
    """Cancel the clients (their connections close); a client's own failure is raised."""
    for task in tasks:
        task.cancel()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if not isinstance(result, asyncio.CancelledError) and result is not None:
            raise result


def bench_config(name, args, peak, root):
    run = make_run(name, root)
    limit = peak / sample_flops(name)
    state, row = row_bytes(run)
    server = Server(run, max(max(args.clients), args.memory_streams), 10**7)
    try:
        asyncio.run(load(server, 1, 0.5, 1.0, 200))  # the first requests: caches, pages
        wait_idle(server)
        idle = statistics.median([server.rss() for _ in range(5)])  # before any big batch
        live = asyncio.run(hold(server, args.memory_streams, 10**7))
        memory = {"streams": args.memory_streams, "rss_idle": idle, "rss_live": live,
                  "measured_per_stream": (live - idle) / args.memory_streams,
                  "batch_row_bytes": row, "state_bytes": state}
        wait_idle(server)
        levels = []
        for c in args.clients:
            log(f"{name}: {c} clients ...")
            chars, ttft, gaps, server_cpu, client_cpu = asyncio.run(
                load(server, c, args.warmup, args.seconds, args.max_tokens))
            wait_idle(server)
            total = chars / args.seconds
            levels.append({"clients": c, "total_chars_s": total, "per_stream_chars_s": total / c,
                           "limit_fraction": total / limit,
                           "ttft_p50_ms": ms(quantile(ttft, 0.5)),
                           "ttft_p99_ms": ms(quantile(ttft, 0.99)), "ttft_n": len(ttft),
                           "gap_p50_ms": ms(quantile(gaps, 0.5)),
                           "gap_p99_ms": ms(quantile(gaps, 0.99)),
                           "server_cpu": server_cpu, "client_cpu": client_cpu})
        one = levels[0]["total_chars_s"] if args.clients[0] == 1 else None
        for level in levels:
            level["x_one_at_a_time"] = one and level["total_chars_s"] / one
    finally:
        server.stop()
    return {"config": name, "flops_per_char": sample_flops(name), "limit_chars_s": limit,
            "levels": levels, "memory": memory}


def ms(x):
    return None if x is None else 1000 * x


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def report(res):
    h = res["header"]
    print(f"# charrnn serve under load, {h['date']}\n\n{h['platform']}; {h['cpu']}; "
          f"{h['cores']} cores; commit {h['commit']}\n`{h['command']}`\n\n"
          f"Arithmetic limit: float32 product peak on one thread "
          f"{res['peak_flops'] / 1e9:.1f} GFLOP/s (BLAS {res['blas_flops'] / 1e9:.1f}, "
          f"packed kernel {res['packed_flops'] / 1e9:.1f}) over each model's flops a "
          f"character; {res['seconds']:g} s windows after {res['warmup']:g} s of load; "
          f"requests of {res['max_tokens']} characters after a {len(PROMPT)}-character "
          f"prompt.\n")
    for c in res["configs"]:
        print(f"## {c['config']}: {c['flops_per_char'] / 1e6:.2f} MFLOP a character, limit "
              f"{c['limit_chars_s']:,.0f} chars/s\n")
        print("| clients | total chars/s | per stream | x one at a time | % of limit | "
              "first char p50 / p99 ms | chunk gap p50 / p99 ms | server CPU | clients CPU |\n"
              "|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for lv in c["levels"]:
            print(f"| {lv['clients']} | {lv['total_chars_s']:,.0f} | "
                  f"{lv['per_stream_chars_s']:,.0f} | {fmt(lv['x_one_at_a_time'], '.2f')} | "
                  f"{100 * lv['limit_fraction']:.0f}% | {fmt(lv['ttft_p50_ms'], '.1f')} / "
                  f"{fmt(lv['ttft_p99_ms'], '.1f')} | {fmt(lv['gap_p50_ms'], '.1f')} / "
                  f"{fmt(lv['gap_p99_ms'], '.1f')} | {lv['server_cpu']:.2f} | "
                  f"{lv['client_cpu']:.2f} |")
        m = c["memory"]
        print(f"\nMemory with {m['streams']} live streams: RSS {m['rss_idle'] / 2**20:.1f} -> "
              f"{m['rss_live'] / 2**20:.1f} MiB, {m['measured_per_stream'] / 1024:.1f} KiB a "
              f"stream measured; the batch's arrays {m['batch_row_bytes'] / 1024:.1f} KiB a "
              f"row, of which the state {m['state_bytes'] / 1024:.1f} KiB\n")


def header():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    here = os.path.dirname(os.path.abspath(__file__))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, text=True,
                            capture_output=True).stdout.strip() or "unknown"
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "commit": commit, "command": shlex.join(sys.orig_argv)}


def main():
    args = parse_args()
    blas, packed = gemm_peak(1)
    res = {"header": header(), "peak_flops": max(blas, packed), "blas_flops": blas,
           "packed_flops": packed, "seconds": args.seconds, "warmup": args.warmup,
           "max_tokens": args.max_tokens, "configs": []}
    with tempfile.TemporaryDirectory() as root:
        for name in args.configs:
            res["configs"].append(bench_config(name, args, res["peak_flops"], root))
    report(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
