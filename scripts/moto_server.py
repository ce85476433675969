"""Runs moto's standalone AWS emulator on 127.0.0.1 for tests and the demo.

Prints the port it listens on (a free one unless given), then serves until its standard input
closes, so the emulator never outlives the process that started it.

One gap of the emulator is bridged here, in front of it, without changing what infra sends:
the AWS SDK speaks Smithy RPC v2 CBOR to CloudWatch, which moto does not serve; requests are
translated to CloudWatch's JSON protocol (which moto serves) and answers back to CBOR.
"""

import base64
import datetime
import io
import json
import os
import re
import sys
import threading
import time

# AWS's managed IAM policies exist in every real account; the emulator loads them only when
# asked (infra attaches one to the role ECS shifts load balancer traffic with).
os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

import cbor2  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server  # noqa: E402

CBOR_PATH = re.compile(r"^/service/GraniteServiceVersion20100801/operation/(\w+)$")


def _to_json(value):
    """CBOR-decoded values as JSON: timestamps (tag 1) become epoch seconds."""
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, bytes):


        return base64.b64encode(value).decode()
    return value


def _is_time(key):
    return key.endswith("Timestamp") or key == "LastModified" or key.endswith("Timestamps")


def _to_cbor(value, key=""):
    """A JSON answer as CBOR values: epoch-second timestamps become datetimes (tag 1)."""
    if isinstance(value, dict):
        return {k: _to_cbor(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cbor(v, key) for v in value]
    if _is_time(key) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
    if _is_time(key) and isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


class Bridge:
    """WSGI middleware in front of moto's application."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        m = CBOR_PATH.match(path)
        if m and "cbor" in environ.get("HTTP_SMITHY_PROTOCOL", ""):
            return self.cbor(m.group(1), environ, start_response)
        return self.app(environ, start_response)

    def cbor(self, operation, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        request = cbor2.loads(raw) if raw else {}
        body = json.dumps(_to_json(request)).encode()
        inner = dict(environ)
        inner["PATH_INFO"] = "/"
        inner["CONTENT_TYPE"] = "application/x-amz-json-1.0"
        inner["CONTENT_LENGTH"] = str(len(body))
        inner["HTTP_X_AMZ_TARGET"] = f"GraniteServiceVersion20100801.{operation}"
        inner.pop("HTTP_SMITHY_PROTOCOL", None)
        inner["wsgi.input"] = io.BytesIO(body)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"] = status
            captured["headers"] = headers
            return lambda _data: None

        chunks = self.app(inner, capture)
        try:
            answer = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        try:
            decoded = json.loads(answer) if answer.strip() else {}
        except ValueError:
            decoded = {"__type": "InternalFailure", "message": answer.decode(errors="replace")}
        if isinstance(decoded, dict) and "__type" in decoded:
            # Errors keep their status; the SDK reads the code from `__type`.
            decoded["__type"] = decoded["__type"].split("#")[-1]
        out = cbor2.dumps(_to_cbor(decoded), datetime_as_timestamp=True, timezone=datetime.timezone.utc)
        start_response(
            captured.get("status", "500 Internal Server Error"),
            [
                ("Content-Type", "application/cbor"),
                ("smithy-protocol", "rpc-v2-cbor"),
                ("Content-Length", str(len(out))),
                ("x-amzn-RequestId", "bridge-" + str(time.time_ns())),
            ],
        )
        return [out]


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    app = Bridge(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(server.server_address[1], flush=True)
    try:
        sys.stdin.read()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
