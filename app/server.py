"""The example web service the pipeline builds and deploys: `/` and `/health` on port 3333.

Standard library only, so the image stays small and has little to scan. PORT overrides the port.
"""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    server_version = "web"

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path == "/health":
            self.reply(200, {"status": "ok"})
        elif self.path == "/":
            self.reply(200, {"service": "web", "version": os.environ.get("APP_VERSION", "dev")})
        else:
            self.reply(404, {"error": "not found"})

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the stdlib's name)
        sys.stdout.write("%s %s\n" % (self.address_string(), format % args))
        sys.stdout.flush()


def main() -> None:
    port = int(os.environ.get("PORT", "3333"))
    host = os.environ.get("HOST", "0.0.0.0")
    server = ThreadingHTTPServer((host, port), Handler)
    # ECS stops tasks with SIGTERM: finish in-flight requests and exit cleanly.
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    print(f"listening on {host}:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
