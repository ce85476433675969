"""Runs moto's standalone AWS emulator on 127.0.0.1 for tests and the demo.

Prints the port it listens on (a free one unless given), then serves until its standard input
closes, so the emulator never outlives the process that started it.
"""

import os
import sys

# AWS's managed IAM policies exist in every real account; the emulator loads them only when
# asked (infra attaches one to the role ECS shifts load balancer traffic with).
os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

from moto.server import ThreadedMotoServer  # noqa: E402


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
