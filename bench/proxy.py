"""A loopback proxy that adds a fixed latency to every AWS call, in front of the emulator.

It forwards each request to the upstream emulator after `--latency-ms`, and counts what passes:
requests per operation, the peak number in flight, and writes of the state object. The driver
reads and resets the counters through `GET /__bench/stats` and `POST /__bench/reset`.

Only loopback addresses are ever listened on or forwarded to.
"""

import argparse
import asyncio
import json
import re
import sys
from collections import Counter

STATS = {"calls": Counter(), "in_flight": 0, "peak_in_flight": 0, "state_writes": 0}


def reset() -> None:
    STATS["calls"] = Counter()
    STATS["in_flight"] = 0
    STATS["peak_in_flight"] = 0
    STATS["state_writes"] = 0


async def read_request(reader: asyncio.StreamReader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    request_line, headers = lines[0], {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
        headers.pop("transfer-encoding")
        headers["content-length"] = str(len(body))
    return request_line, headers, body


def operation(request_line: str, headers: dict, body: bytes) -> str:
    """The AWS operation a request makes: query Action, JSON target, or S3 method and kind."""
    text = body[:4096].decode("latin-1", "replace")
    m = re.search(r"(?:^|&)Action=([A-Za-z0-9]+)", text)
    if m:
        return m.group(1)
    target = headers.get("x-amz-target")
    if target:
        return target.split(".")[-1]
    method, path = request_line.split(" ")[:2]
    return f"S3 {method} {path.split('?')[0].rsplit('/', 1)[-1] or '/'}"


async def forward(upstream_port: int, request_line, headers, body) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    headers = dict(headers)
    headers["connection"] = "close"
    head = request_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    return response


def with_close(response: bytes) -> bytes:
    """The upstream answer, told to close the client connection (one request per connection)."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"connection:")]
    return b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + body


async def handle(reader, writer, upstream_port: int, latency: float, state_key: str):
    try:
        request_line, headers, body = await read_request(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
        return
    path = request_line.split(" ")[1]
    if path.startswith("/__bench/"):
        if path.startswith("/__bench/reset"):
            reset()
        payload = json.dumps(
            {
                "calls": sum(STATS["calls"].values()),
                "by_operation": dict(STATS["calls"]),
                "peak_in_flight": STATS["peak_in_flight"],
                "state_writes": STATS["state_writes"],
            }
        ).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        writer.close()
        return
    op = operation(request_line, headers, body)
    STATS["calls"][op] += 1
    if request_line.startswith("PUT ") and path.split("?")[0].endswith("/" + state_key):
        STATS["state_writes"] += 1
    STATS["in_flight"] += 1
    STATS["peak_in_flight"] = max(STATS["peak_in_flight"], STATS["in_flight"])
    try:
        await asyncio.sleep(latency)
        response = await forward(upstream_port, request_line, headers, body)
        writer.write(with_close(response))
        await writer.drain()
    finally:
        STATS["in_flight"] -= 1
        writer.close()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--upstream-port", type=int, required=True)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--state-key", default="bench.json")
    args = p.parse_args()
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args.upstream_port, args.latency_ms / 1000, args.state_key),
        "127.0.0.1",
        0,
        backlog=1024,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    # Serve until stdin closes: the proxy never outlives the driver.
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    async with server:
        await asyncio.wait([asyncio.ensure_future(stdin_closed)])


if __name__ == "__main__":
    asyncio.run(main())
