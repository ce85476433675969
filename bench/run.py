"""The scale benchmark: infra against the emulator behind a latency-adding loopback proxy.

For each size (services behind one load balancer, 3 zones, a NAT gateway per zone, each service
with a port and a path rule) it measures `apply` from empty, a no-change `plan`, a one-service
change and `destroy`: wall time, AWS calls, peak requests in flight, peak RSS of infra, state
writes, and the critical path of the plan's step graph. It prints a Markdown table and checks the
targets. Not part of the test suite: run it with `bench/run` (see README).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = "bench"
BUCKET = "infra-bench-state"


def start(cmd: list[str], env=None) -> tuple[subprocess.Popen, int]:
    """Starts a helper that prints its port and lives until its stdin closes."""
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    port = int(proc.stdout.readline())
    return proc, port


def stats(proxy_port: int, reset: bool = False) -> dict:
    path = "reset" if reset else "stats"
    req = urllib.request.Request(f"http://127.0.0.1:{proxy_port}/__bench/{path}", method="POST" if reset else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def environment(n: int) -> str:
    zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
    text = f"""environment: {ENV}
region: us-east-1
state:
  s3: {{bucket: {BUCKET}}}
network:
  cidr: 10.0.0.0/16
  availability_zones: [{", ".join(zones)}]
  public_subnets: [10.0.0.0/24, 10.0.1.0/24, 10.0.2.0/24]
  private_subnets: [10.0.10.0/24, 10.0.11.0/24, 10.0.12.0/24]
  nat: per_az
load_balancer: {{}}
cluster: {{}}
services:
"""
    for i in range(n):
        text += (
            f"  s{i}:\n    image: docker.io/library/nginx:1.27\n    cpu: 256\n    memory: 512\n"
            f"    port: {3000 + i}\n    desired_count: 2\n    path_patterns: [\"/s{i}/*\"]\n"
        )
    return text


DEPLOY_ENV = "deploy"


def deploy_environment(n: int) -> str:
    """The same environment with a repository that its first service's image comes from."""
    text = environment(n).replace(f"environment: {ENV}", f"environment: {DEPLOY_ENV}", 1)
    text = text.replace("services:\n", "repositories: {web: {}}\nservices:\n", 1)
    return text.replace("image: docker.io/library/nginx:1.27", "image: web", 1)


def push(env: dict, moto_port: int, tag: str) -> None:
    """Pushes an image to the deploy environment's repository, straight to the emulator."""
    direct = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto_port}")
    subprocess.run(
        [str(ROOT / ".venv/bin/python"), str(ROOT / "scripts/push_demo_image.py"), f"{DEPLOY_ENV}/web", tag],
        env=direct, check=True, capture_output=True,
    )


def measure_deploy(infra: str, n: int, env: dict, proxy_port: int, moto_port: int, work: str) -> dict:
    """`infra deploy` of one service in an environment of n: set up unmeasured, then measured."""
    envdir = Path(work) / "environments"
    (envdir / f"{DEPLOY_ENV}.yaml").write_text(deploy_environment(n))
    quiet = dict(cwd=work, env=env, check=True, capture_output=True)
    subprocess.run([infra, "apply", DEPLOY_ENV, "--auto-approve", "--target", "repository"], **quiet)
    push(env, moto_port, "one")
    subprocess.run([infra, "apply", DEPLOY_ENV, "--auto-approve", "--no-wait", "--image", "web=one"], **quiet)
    push(env, moto_port, "two")
    deploy = run(infra, ["deploy", DEPLOY_ENV, "--image", "web=two", "--no-wait"], env, proxy_port, work)
    if deploy["code"] != 0:
        sys.exit(f"deploy in {n} services failed:\n{deploy['stderr'][-3000:]}")
    converged = subprocess.run([infra, "plan", DEPLOY_ENV, "--detailed-exitcode"], cwd=work, env=env, capture_output=True)
    if converged.returncode != 0:
        sys.exit(f"after deploy, {n} services did not plan No changes:\n{converged.stdout.decode()[-3000:]}")
    subprocess.run([infra, "destroy", DEPLOY_ENV, "--auto-approve"], **quiet)
    return deploy


def run(infra: str, args: list[str], env: dict, proxy_port: int, cwd: str) -> dict:
    stats(proxy_port, reset=True)
    t = time.monotonic()
    proc = subprocess.Popen([infra, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.monotonic() - t
    s = stats(proxy_port)
    return {
        "code": proc.returncode,
        "wall": wall,
        "calls": s["calls"],
        "by_operation": s["by_operation"],
        "peak_in_flight": s["peak_in_flight"],
        "state_writes": s["state_writes"],
        "stdout": out.decode(),
        "stderr": err.decode(),
    }


def peak_rss_kb(infra: str, args: list[str], env: dict, cwd: str) -> int:
    """Peak resident set of one run, from the kernel's accounting of the child."""
    proc = subprocess.Popen([infra, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    return usage.ru_maxrss


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="1,10,30,100")
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--infra", default=str(ROOT / "target/debug/infra"))
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--deploy-sizes", default="1,10,30", help="sizes at which `infra deploy` is measured")
    args = p.parse_args()
    python = str(ROOT / ".venv/bin/python")
    moto, moto_port = start([python, str(ROOT / "scripts/moto_server.py")])
    proxy, proxy_port = start(
        [python, str(ROOT / "bench/proxy.py"), "--upstream-port", str(moto_port),
         "--latency-ms", str(args.latency_ms), "--state-key", f"{ENV}.json"]
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": tempfile.gettempdir(),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy_port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_COLOR": "1",
    }
    results = []
    try:
        for n in [int(s) for s in args.sizes.split(",")]:
            with tempfile.TemporaryDirectory() as work:
                envdir = Path(work) / "environments"
                envdir.mkdir()
                (envdir / f"{ENV}.yaml").write_text(environment(n))
                row = {"services": n}
                t = time.monotonic()
                subprocess.run([args.infra, "validate"], cwd=work, env=env, check=True, capture_output=True)
                row["validate_ms"] = (time.monotonic() - t) * 1000
                plan_json = run(args.infra, ["plan", ENV, "--json"], env, proxy_port, work)
                row["critical_path"] = json.loads(plan_json["stdout"]).get("critical_path_steps")
                apply = run(args.infra, ["apply", ENV, "--auto-approve", "--no-wait"], env, proxy_port, work)
                if apply["code"] != 0:
                    sys.exit(f"apply of {n} services failed:\n{apply['stderr'][-3000:]}")
                row["apply"] = apply
                plan = run(args.infra, ["plan", ENV, "--detailed-exitcode"], env, proxy_port, work)
                if plan["code"] != 0:
                    sys.exit(f"{n} services did not converge:\n{plan['stdout'][-3000:]}")
                row["plan"] = plan
                row["plan_rss_kb"] = peak_rss_kb(args.infra, ["plan", ENV], env, work)
                (envdir / f"{ENV}.yaml").write_text(environment(n).replace("desired_count: 2", "desired_count: 3", 1))
                row["change"] = run(args.infra, ["apply", ENV, "--auto-approve", "--no-wait"], env, proxy_port, work)
                destroy = run(args.infra, ["destroy", ENV, "--auto-approve"], env, proxy_port, work)
                if destroy["code"] != 0:
                    sys.exit(f"destroy of {n} services failed:\n{destroy['stderr'][-3000:]}")
                row["destroy"] = destroy
                if str(n) in args.deploy_sizes.split(","):
                    row["deploy"] = measure_deploy(args.infra, n, env, proxy_port, moto_port, work)
                results.append(row)
                print(f"{n} services done", file=sys.stderr, flush=True)
    finally:
        proxy.stdin.close()
        moto.stdin.close()
        proxy.wait()
        moto.wait()
    report(results, args.latency_ms)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def report(results: list[dict], latency: float) -> None:
    print(f"\nlatency {latency:.0f} ms per AWS call\n")
    print("| services | operation | wall | AWS calls | peak in flight | state writes | critical path (steps) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        for op in ["apply", "plan", "change", "destroy", "deploy"]:
            if op not in r:
                continue
            x = r[op]
            cp = r["critical_path"] if op == "apply" else ""
            name = dict(
                apply="apply from empty", plan="no-change plan", change="one-service change",
                destroy="destroy", deploy="deploy one service (no wait)",
            )[op]
            print(
                f"| {r['services']} | {name} "
                f"| {x['wall']:.2f} s | {x['calls']} | {x['peak_in_flight']} | {x['state_writes']} | {cp} |"
            )
    print("\n| services | peak RSS of plan | validate |")
    print("|---:|---:|---:|")
    for r in results:
        print(f"| {r['services']} | {r['plan_rss_kb'] / 1024:.1f} MB | {r['validate_ms']:.0f} ms |")
    print("\nTargets:")
    by_n = {r["services"]: r for r in results}
    checks = []
    if 100 in by_n:
        r = by_n[100]
        checks.append(("no-change plan at 100 services: <= 40 AWS calls", r["plan"]["calls"] <= 40, r["plan"]["calls"]))
        checks.append(("no-change plan at 100 services: <= 0.6 s", r["plan"]["wall"] <= 0.6, f"{r['plan']['wall']:.2f} s"))
        checks.append(("peak RSS of a 100-service plan <= 60 MB", r["plan_rss_kb"] <= 60 * 1024, f"{r['plan_rss_kb'] / 1024:.1f} MB"))
    if 30 in by_n:
        r = by_n[30]
        checks.append(("apply from empty at 30 services: <= 6 s", r["apply"]["wall"] <= 6, f"{r['apply']['wall']:.2f} s"))
        cp = r["critical_path"] or 0
        checks.append(
            ("state writes during that apply <= 3 x the step graph's depth", r["apply"]["state_writes"] <= 3 * cp,
             f"{r['apply']['state_writes']} writes, depth {cp}")
        )
    for r in results:
        if "deploy" in r:
            d = r["deploy"]
            checks.append((f"deploy of one service among {r['services']}: <= 12 AWS calls", d["calls"] <= 12, d["calls"]))
            checks.append((f"deploy of one service among {r['services']}: <= 1 s", d["wall"] <= 1, f"{d['wall']:.2f} s"))
    for r in results:
        checks.append((f"validate at {r['services']} services <= 30 ms", r["validate_ms"] <= 30, f"{r['validate_ms']:.0f} ms"))
    for name, ok, value in checks:
        print(f"- [{'x' if ok else ' '}] {name}: {value}")


if __name__ == "__main__":
    main()
