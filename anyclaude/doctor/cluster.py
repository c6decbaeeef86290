"""A model across several machines (mlx-lm with `hosts` or `hostfile`): the host list
itself, the parallel mode against what mlx-lm can do with the model, and one row per host
saying whether it can run its rank.

Every host answers one probe, run by the hosts' Python (here for this machine, through
`ssh -o BatchMode=yes` for the others, so a password prompt is a failure, not a hang):
its Python and mlx / mlx-lm versions (compared with this machine's, which runs rank 0),
`mlx_lm.server` next to that Python, the model's files, and whether the ports its rank
listens on are free and its address is its own.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anyclaude import timeouts
from anyclaude.backends import mlx_cluster, mlx_sharding
from anyclaude.backends.mlx_cluster import LOCAL_SSH, ClusterError, Layout
from anyclaude.doctor.result import Context, Result, fail, from_sentence, ok, warn
from anyclaude.processes import run_command

CONNECT_TIMEOUT_S = 5
PROBE = r"""
import errno, importlib.metadata as meta, json, os, socket, sys
server, model, ports = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = {"python": sys.version.split()[0], "server": os.path.isfile(server), "busy": [],
       "foreign": []}
for name in ("mlx", "mlx-lm"):
    try:
        out[name] = meta.version(name)
    except meta.PackageNotFoundError:
        out[name] = None
folder = os.path.expanduser(model)
if os.path.isdir(folder) or model.startswith(("/", ".", "~")) or model.count("/") != 1:
    out["model"] = os.path.isfile(os.path.join(folder, "config.json"))
else:
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(os.environ.get("HF_HOME") or
        os.path.expanduser("~/.cache/huggingface"), "hub")
    snaps = os.path.join(hub, "models--" + model.replace("/", "--"), "snapshots")
    out["model"] = any(os.path.isfile(os.path.join(snaps, s, "config.json"))
                       for s in (os.listdir(snaps) if os.path.isdir(snaps) else []))
for ip, port in ports:
    with socket.socket() as s:
        try:
            s.bind((ip, port))
        except OSError as exc:
            out["foreign" if exc.errno == errno.EADDRNOTAVAIL else "busy"].append([ip, port])
print(json.dumps(out))
"""
"""Run by the hosts' Python with the server script, the model and the ports to try."""


@dataclass
class Machine:
    """One host of the cluster and the ranks it runs (a host may be listed twice)."""

    ssh: str
    label: str
    ports: list[tuple[str, int]] = field(default_factory=list)

    @property
    def here(self) -> bool:
        return self.ssh == LOCAL_SSH


def machines(plan: Layout, options: dict[str, str | None]) -> list[Machine]:
    start = int(options.get("distributed_port") or mlx_cluster.DEFAULT_PORT)
    found: dict[str, Machine] = {}
    for rank, host in enumerate(plan.hosts):
        machine = found.setdefault(host.ssh, Machine(host.ssh, host.label))
        if plan.backend == "ring" and host.ips:
            machine.ports.append((host.ips[0], start + rank))
        elif plan.backend.startswith("jaccl") and rank == 0 and host.ips:
            machine.ports.append((host.ips[0], start))
    return list(found.values())


async def cluster_check(ctx: Context) -> list[Result] | None:
    options = ctx.settings.backend_options()
    if not mlx_cluster.configured(options):
        return None
    try:
        plan = mlx_cluster.layout(options)
    except ClusterError as exc:
        return [from_sentence("cluster", "fail", str(exc))]
    try:
        _, python = mlx_cluster.pythons(options)
    except ClusterError as exc:
        return [from_sentence("cluster", "fail", str(exc))]
    rows = [ok("cluster", f"{len(plan.hosts)} ranks over {plan.backend}: "
               + ", ".join(plan.labels) + " (rank 0 is this machine)"), _parallel(ctx, plan)]
    model = ctx.settings.endpoint.model
    if not model:
        return rows
    hosts = machines(plan, options)
    answers = await asyncio.gather(*(_probe(ctx, m, python, model) for m in hosts))
    reference = answers[0] if isinstance(answers[0], dict) else None
    rows += [_judge(m, answer, reference, python, model) for m, answer in zip(hosts, answers, strict=True)]
    return rows


def _parallel(ctx: Context, plan: Layout) -> Result:
    options, model = ctx.settings.backend_options(), ctx.settings.endpoint.model
    found = mlx_sharding.support(model, options.get("python") or sys.executable)
    try:
        mode, why = mlx_cluster.choose_parallel(options.get("parallel"), found,
                                                len(plan.hosts), model or "the model")
    except ClusterError as exc:
        return from_sentence("parallel", "fail", str(exc))
    if found is None:
        return warn("parallel", f"{mode} parallel ({why})", "Download the model first "
                    "(`hf download MODEL`) so doctor can check mlx-lm can shard it.")
    return ok("parallel", f"{mode} parallel ({why})")


async def _probe(ctx: Context, machine: Machine, python: str,
                 model: str) -> dict[str, Any] | str:
    """The probe's answer, or what went wrong (one line)."""
    server = str(Path(python).parent / "mlx_lm.server")
    command = [python, "-c", PROBE, server, model, json.dumps(machine.ports)]
    if not machine.here:
        command = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
                   machine.ssh, shlex.join(command)]
    out = await run_command(command, timeouts.PACKAGE_S, env=dict(ctx.environ))
    last = out.text.splitlines()[-1] if out.text else ""
    if out.code == 0:
        try:
            answer: dict[str, Any] = json.loads(last)
            return answer
        except ValueError:
            return f"an unreadable answer ({last[:120]})"
    if out.timed_out:
        return f"no answer within {timeouts.PACKAGE_S:g} s"
    if out.code is None:
        return f"ssh could not run ({out.text})"
    if out.code == 255 and not machine.here:
        return f"ssh: {last or 'the connection failed'}"
    if out.code == 127 or "No such file" in out.text:
        return "python"
    return f"the probe failed ({last or f'exit code {out.code}'})"


def _judge(machine: Machine, answer: dict[str, Any] | str, reference: dict[str, Any] | None,
           python: str, model: str) -> Result:
    """One row per host: the first thing that stops its rank, with the command to fix it."""
    name = f"host {machine.label}"
    remote = "" if machine.here else f"ssh {machine.ssh} "
    install = '"mlx-lm[cpu]"' if sys.platform.startswith("linux") else "mlx-lm"
    if answer == "python":
        return fail(name, f"there is no {python}", "Create the same Python there (e.g. "
                    f"`{remote}python3 -m venv {Path(python).parent.parent}`, then "
                    f"install {install} in it), or set MLX_LM_HOSTS_PYTHON to a path that "
                    "exists on every host.")
    if isinstance(answer, str):
        if answer.startswith("ssh:"):
            said = answer[5:].strip().removeprefix("ssh: ")
            return fail(name, f"ssh cannot log in without a prompt ({said})",
                        f"Make `ssh {machine.ssh} true` work without a prompt: turn on "
                        "Remote Login there (System Settings > General > Sharing) and run "
                        f"`ssh-copy-id {machine.ssh}`.")
        return fail(name, answer, f"Run `{remote}{python} -c 'import mlx_lm'` to see why.")
    pip = f"`{remote}{shlex.quote(python)} -m pip install"
    if not answer.get("mlx-lm") or not answer.get("mlx"):
        return fail(name, f"{python} has no mlx-lm", f"Install it: {pip} {install}`.")
    if reference and (answer["mlx"], answer["mlx-lm"]) != (reference["mlx"],
                                                           reference["mlx-lm"]):
        return fail(name, f"mlx {answer['mlx']} and mlx-lm {answer['mlx-lm']}, but this "
                    f"machine has mlx {reference['mlx']} and mlx-lm {reference['mlx-lm']}",
                    f"Install the same versions: {pip} mlx=={reference['mlx']} "
                    f"mlx-lm=={reference['mlx-lm']}`.")
    if not answer.get("server"):
        return fail(name, f"no mlx_lm.server next to {python}",
                    f"Reinstall mlx-lm there: {pip} --force-reinstall {install}`.")
    if not answer.get("model"):
        return _missing_model(name, machine, model)
    for key, what, fix in (("busy", "in use", "stop what uses it, or set "
                            "MLX_LM_DISTRIBUTED_PORT to another free range"),
                           ("foreign", "not an address of this host", "list the host by its "
                            "own address on the network that joins the hosts")):
        if answer.get(key):
            ip, port = answer[key][0]
            return fail(name, f"{ip}:{port}, where its rank listens, is {what}",
                        fix[:1].upper() + fix[1:] + ".")
    ports = ", ".join(str(port) for _, port in machine.ports)
    return ok(name, f"Python {answer['python']}, mlx {answer['mlx']}, mlx-lm "
              f"{answer['mlx-lm']}, the model" + (f", port {ports} free" if ports else ""))


def _missing_model(name: str, machine: Machine, model: str) -> Result:
    folder = Path(model).expanduser()
    if model.count("/") == 1 and not model.startswith(("/", ".", "~")):
        where = "" if machine.here else f"ssh {machine.ssh} "
        return warn(name, f"{model} is not downloaded there; its rank downloads its part at "
                    "the first start", f"Fetch it now: `{where}hf download {model}`.")
    if machine.here:
        return fail(name, f"{folder} is not a model folder", "Point MLX_LM_MODEL at a model "
                    "folder that exists at the same path on every host.")
    return fail(name, f"{folder} is not there", f"Copy it: `rsync -a {folder}/ "
                f"{machine.ssh}:{folder}/` (every host needs the model at the same path).")
