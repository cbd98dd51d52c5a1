#!/usr/bin/env python3
"""Deployment checks that schema validation cannot make (run by .ci/run; needs PyYAML).

Kubernetes (deploy/kubernetes/*.yaml):
  - a policy/v1 PodDisruptionBudget selects the Deployment's pods and allows an eviction;
  - the pod template has topologySpreadConstraints over nodes, selecting its own pods;
  - a Service selecting the pods exposes the container's `metrics` port, which is the port of
    `server.metrics_listen` in the ConfigMap's config.toml (and of the prometheus.io/port annotation);
  - the pod template's `checksum/config` annotation is the sha256 of the ConfigMap's file, so an edit
    of the ConfigMap changes the pod template and rolls the pods;
  - `[server] workers` in config.toml is the container's CPU request in whole cores, rounded up,
    at least 1.
Dockerfile:
  - `.dockerignore` keeps target/ and .git out of the build context;
  - every base image comes from a global ARG (the one place to pin and bump it, overridable with
    --build-arg), is tag-pinned (not `latest`) and, where a digest is given, a well-formed
    `@sha256:` one; tag-only pins are reported (an error with --require-digests);
  - the stage that builds the binary compiles the dependencies (`cargo chef cook`) from a recipe
    before it copies the sources, with the same profile and package as its final `cargo build`.

`python3 .ci/deploy_check.py --config-checksum` prints the value for `checksum/config`.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import shlex
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
CHECKSUM_ANNOTATION = "checksum/config"

errors: list[str] = []
warnings: list[str] = []


def fail(msg: str) -> None:
    errors.append(msg)


# --------------------------------------------------------------------------------------------
# Kubernetes


def load_manifests() -> list[tuple[Path, dict]]:
    import yaml  # here, so that --config-checksum needs no PyYAML

    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def selects(selector: dict | None, labels: dict) -> bool:
    """Whether a label selector (matchLabels/matchExpressions, or a Service's plain map) matches."""
    if not selector:
        return False
    if "matchLabels" in selector or "matchExpressions" in selector:
        match_labels = selector.get("matchLabels") or {}
        expressions = selector.get("matchExpressions") or []
    else:
        match_labels, expressions = selector, []
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for e in expressions:
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and labels.get(key) in values)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def cpu_cores(quantity: str | int | float) -> float:
    q = str(quantity).strip()
    if q.endswith("m"):
        return int(q[:-1]) / 1000
    return float(q)


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def config_checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_kubernetes() -> None:
    docs = load_manifests()
    deployments = [(p, d) for p, d in docs if d.get("kind") == "Deployment"]
    if len(deployments) != 1:
        fail(f"expected one Deployment in {K8S.relative_to(ROOT)}, found {len(deployments)}")
        return
    _, dep = deployments[0]
    spec = dep["spec"]
    template = spec["template"]
    pod_labels = template["metadata"].get("labels", {})
    annotations = template["metadata"].get("annotations", {})
    pod = template["spec"]
    containers = pod["containers"]
    container = next((c for c in containers if c["name"] == "usage-gateway"), containers[0])
    replicas = spec.get("replicas", 1)

    # PodDisruptionBudget
    pdbs = [
        d
        for _, d in docs
        if d.get("kind") == "PodDisruptionBudget"
        and d.get("apiVersion") == "policy/v1"
        and selects(d["spec"].get("selector"), pod_labels)
    ]
    if not pdbs:
        fail("no policy/v1 PodDisruptionBudget selects the Deployment's pods")
    for pdb in pdbs:
        s = pdb["spec"]
        if ("minAvailable" in s) == ("maxUnavailable" in s):
            fail(f"PodDisruptionBudget {pdb['metadata']['name']}: set one of minAvailable, maxUnavailable")
        if isinstance(s.get("maxUnavailable"), int) and s["maxUnavailable"] < 1:
            fail("PodDisruptionBudget maxUnavailable < 1 blocks every node drain")
        if isinstance(s.get("minAvailable"), int) and s["minAvailable"] >= replicas:
            fail(f"PodDisruptionBudget minAvailable >= replicas ({replicas}) blocks every node drain")
    if replicas < 2:
        fail(f"Deployment replicas is {replicas}: a disruption budget needs at least 2")

    # Topology spread
    tsc = pod.get("topologySpreadConstraints") or []
    if not tsc:
        fail("the pod template has no topologySpreadConstraints")
    for c in tsc:
        if not selects(c.get("labelSelector"), pod_labels):
            fail(f"topologySpreadConstraint on {c.get('topologyKey')} does not select the pods it spreads")
    if tsc and not any(c.get("topologyKey") == "kubernetes.io/hostname" for c in tsc):
        fail("no topologySpreadConstraint over kubernetes.io/hostname")

    # The ConfigMap the pods mount, and its config.toml
    cm_names = [v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v]
    cms = [(p, d) for p, d in docs if d.get("kind") == "ConfigMap" and d["metadata"]["name"] in cm_names]
    if len(cms) != 1:
        fail(f"expected the one ConfigMap the Deployment mounts ({cm_names}), found {len(cms)}")
        return
    cm_path, cm = cms[0]
    config = tomllib.loads(cm["data"]["config.toml"])
    server = config.get("server", {})

    # Config checksum
    want = config_checksum(cm_path)
    got = annotations.get(CHECKSUM_ANNOTATION)
    if got != want:
        fail(
            f"pod template annotation {CHECKSUM_ANNOTATION} is {got!r}, but "
            f"sha256sum {cm_path.relative_to(ROOT)} is {want}: update the annotation "
            f"(python3 .ci/deploy_check.py --config-checksum) so that the edit rolls the pods"
        )
    if len([p for p, _ in docs if p == cm_path]) != 1:
        fail(f"{cm_path.relative_to(ROOT)} must hold the ConfigMap alone (its checksum is the file's)")

    # Metrics port: config, container, annotation, Service
    if "metrics_listen" not in server:
        fail("the ConfigMap's config.toml sets no server.metrics_listen")
    else:
        mport = port_of(server["metrics_listen"])
        named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        if named.get("metrics") != mport:
            fail(f"container port `metrics` is {named.get('metrics')}, server.metrics_listen's port is {mport}")
        if "prometheus.io/port" in annotations and str(annotations["prometheus.io/port"]) != str(mport):
            fail(f"prometheus.io/port is {annotations['prometheus.io/port']}, metrics listen on {mport}")
        exposed = [
            d["metadata"]["name"]
            for _, d in docs
            if d.get("kind") == "Service"
            and selects(d["spec"].get("selector"), pod_labels)
            and any(sp.get("targetPort", sp.get("port")) in ("metrics", mport) for sp in d["spec"].get("ports", []))
        ]
        if not exposed:
            fail(f"no Service selecting the pods exposes the metrics port ({mport})")
        if "listen" in server:
            api_port = port_of(server["listen"])
            if named.get("http") != api_port:
                fail(f"container port `http` is {named.get('http')}, server.listen's port is {api_port}")

    # Workers vs CPU request
    cpu = container.get("resources", {}).get("requests", {}).get("cpu")
    if cpu is None:
        fail("the container has no CPU request")
    else:
        want_workers = max(1, math.ceil(cpu_cores(cpu)))
        if server.get("workers") != want_workers:
            fail(
                f"[server] workers is {server.get('workers')!r}, the CPU request {cpu} "
                f"asks for {want_workers} (whole cores rounded up, at least 1)"
            )


# --------------------------------------------------------------------------------------------
# Dockerfile

IMAGE_RE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._/-]*(?::\d+/[a-z0-9._/-]+)?)(?::(?P<tag>[\w][\w.-]*))?(?:@(?P<digest>\S+))?$")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) pairs: comments dropped, continuation lines joined."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    if buf:
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def without_flags(rest: str) -> list[str]:
    return [w for w in shlex.split(rest) if not w.startswith("--")]


def check_image(ref: str, where: str, require_digest: bool) -> None:
    m = IMAGE_RE.match(ref)
    if not m:
        fail(f"{where}: cannot read the image reference {ref!r}")
        return
    if not m["tag"] or m["tag"] == "latest":
        fail(f"{where}: {ref} is not pinned to a version tag")
    if m["digest"] is None:
        msg = f"{where}: {ref} is pinned by tag only (pin it: {m['name']}:{m['tag']}@sha256:<digest>, see README)"
        (fail if require_digest else warnings.append)(msg)
    elif not re.fullmatch(r"sha256:[0-9a-f]{64}", m["digest"]):
        fail(f"{where}: {ref} has a malformed digest")


def check_dockerfile(require_digest: bool) -> None:
    ignore = ROOT / ".dockerignore"
    if not ignore.exists():
        fail(".dockerignore is missing (the build context would carry target/ and .git)")
    else:
        entries = {l.strip().strip("/") for l in ignore.read_text().splitlines() if l.strip() and not l.startswith("#")}
        for needed in ("target", ".git"):
            if needed not in entries:
                fail(f".dockerignore does not exclude {needed}")

    instructions = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    global_args: dict[str, str | None] = {}
    stages: list[dict] = []
    for word, rest in instructions:
        if word == "FROM":
            words = without_flags(rest)
            image = words[0]
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append({"image": image, "alias": alias, "body": []})
        elif not stages:
            if word == "ARG":
                name, _, default = rest.partition("=")
                global_args[name.strip()] = default.strip().strip('"') or None
        else:
            stages[-1]["body"].append((word, rest))
    if not stages:
        fail("the Dockerfile has no FROM")
        return

    aliases = set()
    for i, stage in enumerate(stages):
        image, where = stage["image"], f"Dockerfile stage {i} ({stage['alias'] or 'unnamed'})"
        if image in aliases:
            pass
        else:
            m = re.fullmatch(r"\$\{?(\w+)\}?", image)
            if m:
                if m[1] not in global_args or not global_args[m[1]]:
                    fail(f"{where}: FROM {image} needs a global ARG {m[1]} with a default")
                else:
                    check_image(global_args[m[1]], f"{where} (ARG {m[1]})", require_digest)
            else:
                fail(
                    f"{where}: FROM {image}: name the base image in a global ARG "
                    f"(ARG NAME=image:tag@sha256:..., FROM ${{NAME}}), the one place to pin and bump it"
                )
        if stage["alias"]:
            aliases.add(stage["alias"])

    # The stage that builds the binary: its sources come after a dependency-only build.
    builds = [
        (i, s)
        for i, s in enumerate(stages)
        if any(w == "RUN" and re.search(r"\bcargo build\b", r) for w, r in s["body"])
    ]
    if len(builds) != 1:
        fail(f"expected one Dockerfile stage running `cargo build`, found {len(builds)}")
        return
    _, stage = builds[0]
    cook_at = next(
        (j for j, (w, r) in enumerate(stage["body"]) if w == "RUN" and re.search(r"\bcargo chef cook\b", r)), None
    )
    build_at = next(j for j, (w, r) in enumerate(stage["body"]) if w == "RUN" and re.search(r"\bcargo build\b", r))
    if cook_at is None or cook_at > build_at:
        fail("the build stage compiles no dependency layer (`cargo chef cook`) before `cargo build`")
        return
    for w, r in stage["body"][:cook_at]:
        if w in ("COPY", "ADD"):
            srcs = without_flags(r)[:-1]
            if not all(Path(s).name in ("recipe.json", "Cargo.toml", "Cargo.lock") for s in srcs):
                fail(f"the build stage copies {srcs} before its dependency layer: a source edit rebuilds every dependency")
    copies_sources = any(w in ("COPY", "ADD") for w, _ in stage["body"][cook_at + 1 : build_at])
    if not copies_sources:
        fail("the build stage copies no sources between `cargo chef cook` and `cargo build`")

    def flags(run: str, tool: str) -> tuple[bool, set[str], bool]:
        cmd = run[run.index(tool) :].split("&&")[0]
        words = shlex.split(cmd)
        pkgs = {words[k + 1] for k, x in enumerate(words[:-1]) if x in ("-p", "--package")}
        return "--release" in words, pkgs, "--locked" in words

    cook = flags(stage["body"][cook_at][1], "cargo chef cook")
    build = flags(stage["body"][build_at][1], "cargo build")
    if cook[0] != build[0]:
        fail("`cargo chef cook` and `cargo build` use different profiles: the cooked dependencies go unused")
    if cook[1] != build[1]:
        fail(f"`cargo chef cook` builds packages {sorted(cook[1])}, `cargo build` {sorted(build[1])}")
    if not (cook[2] and build[2]):
        fail("`cargo chef cook` and `cargo build` must both be --locked")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config-checksum", action="store_true", help="print the value for checksum/config and exit")
    ap.add_argument("--require-digests", action="store_true", help="fail on a base image pinned by tag only")
    args = ap.parse_args()
    if args.config_checksum:
        print(config_checksum(K8S / "configmap.yaml"))
        return 0
    check_kubernetes()
    check_dockerfile(args.require_digests)
    for w in warnings:
        print(f"warning: {w}", flush=True)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        return 1
    print("deployment checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
