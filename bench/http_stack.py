"""Quick HTTP stack comparison for the producer: a bare "read the body, answer 200" endpoint.

Runs each server in its own process on a free loopback port and loads it from another
process (`wrk` if installed, else a small asyncio keep-alive client): 64 connections,
2 KB POST bodies, a few seconds each. Prints requests/s. Not a test; numbers depend on
the machine (and on the load generator sharing its cores).

    python -m bench.http_stack [--seconds 5] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.proc import free_port, wait_port

BODY = b'{"eventType":"session.created","id":"s","pad":"' + b"x" * 1950 + b'"}'

# The head of a raw ASGI app: the lifespan handshake (bench/producer_parts.py uses it too).
ASGI_LIFESPAN = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
"""

ASGI_APP = (
    ASGI_LIFESPAN
    + """    body = b""
    more = True
    while more:
        m = await receive()
        body += m.get("body", b"")
        more = m.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")]})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
"""
)

AIOHTTP_APP = """
import sys
from aiohttp import web

async def handle(request):
    await request.read()
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")

app = web.Application()
app.router.add_post("/webhooks/agntix", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def server_commands(workdir: Path, port: int) -> dict[str, list[str]]:
    (workdir / "bench_asgi.py").write_text(ASGI_APP)
    (workdir / "bench_aiohttp.py").write_text(AIOHTTP_APP)
    py = sys.executable
    return {
        "uvicorn+uvloop+httptools (raw ASGI)": uvicorn_command("bench_asgi:app", port),
        "granian ASGI (1 worker)": [
            py,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-ws",
            "bench_asgi:app",
        ],
        "aiohttp web": [py, "bench_aiohttp.py", str(port)],
    }


# Serves argv[1] (`module:app`, imported from the working directory) on 127.0.0.1:argv[2].
_STACK_SERVER = (
    "import sys, uvicorn; from producer.server import stack_config; "
    "uvicorn.Server(stack_config(sys.argv[1], '127.0.0.1', int(sys.argv[2]))).run()"
)


def uvicorn_command(app: str, port: int) -> list[str]:
    """`app` served on the producer's HTTP stack (`producer.server.stack_config`), so that a bare
    endpoint and the producer differ only by what the producer does per request."""
    return [sys.executable, "-c", _STACK_SERVER, app, str(port)]


WRK_LUA = f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.rep("x", {len(BODY)})
"""


def run_wrk(connections: int, seconds: int, script: Path, url: str) -> str:
    """One wrk thread with `connections` connections for `seconds`, `script` making the requests:
    what wrk printed."""
    return subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def load_wrk(port: int, seconds: int, connections: int, workdir: Path) -> float:
    script = workdir / "post.lua"
    script.write_text(WRK_LUA)
    out = run_wrk(connections, seconds, script, f"http://127.0.0.1:{port}/webhooks/agntix")
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(out)


async def _client(port: int, deadline: float, counter: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        b"POST /webhooks/agntix HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    )
    while time.monotonic() < deadline:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        counter[0] += 1
    writer.close()


def load_asyncio(port: int, seconds: int, connections: int) -> float:
    async def run() -> float:
        counter = [0]
        start = time.monotonic()
        await asyncio.gather(*(_client(port, start + seconds, counter) for _ in range(connections)))
        return counter[0] / (time.monotonic() - start)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    use_wrk = shutil.which("wrk") is not None
    print(
        f"load generator: {'wrk -t1' if use_wrk else 'asyncio client'}, {args.connections} connections, "
        f"{args.seconds} s, {len(BODY)} B bodies, {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in server_commands(workdir, 0):
            port = free_port()
            cmd = server_commands(workdir, port)[name]
            server = subprocess.Popen(
                cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                wait_port(port)
                if use_wrk:
                    rps = load_wrk(port, args.seconds, args.connections, workdir)
                else:
                    rps = load_asyncio(port, args.seconds, args.connections)
                print(f"{name:40s} {rps:10.0f} req/s")
            finally:
                server.terminate()
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()


if __name__ == "__main__":
    main()
