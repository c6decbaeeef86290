"""The keeper with a real (tiny) server process: reuse, idle expiry, stop, and no orphans
when the run or the keeper itself is SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from anyclaude.keep import client, state


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spec_for(port: int, extra: str = "") -> client.Spec:
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    return client.Spec(mode="test", model="tiny" + extra, url=f"http://127.0.0.1:{port}/v1",
                       argv=argv, env={"EXTRA": extra} if extra else {})


def gone(pid: int, within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "state"
    yield folder
    for record in state.load_all(folder):  # whatever a failed test left behind
        client.stop(record)


async def start(state_dir: Path, spec: client.Spec, keep_alive: float) -> client.Lease:
    async with client.slot(state_dir, spec.url, keep_alive) as slot:
        lease = await slot.reuse(spec)
        if lease is None:
            lease = await slot.start(spec, state_dir / "server.log")
        return lease


def test_started_server_is_reused_then_stopped_after_keep_alive(state_dir: Path) -> None:
    spec = spec_for(free_port())

    async def scenario() -> tuple[int, int, bool, bool, int]:
        first = await start(state_dir, spec, keep_alive=1.5)
        pid = first.record.server_pid
        first.release()
        await asyncio.sleep(0.3)
        second = await start(state_dir, spec, keep_alive=1.5)
        reused = not second.started
        second.release()
        return pid, second.record.server_pid, first.started, reused, first.record.keeper_pid

    pid, again, started, reused, keeper = asyncio.run(scenario())
    assert started and reused and pid == again
    assert gone(pid) and gone(keeper)
    assert state.load_all(state_dir) == []


def test_record_and_socket_are_private(state_dir: Path) -> None:
    spec = spec_for(free_port())

    async def scenario() -> state.Record:
        lease = await start(state_dir, spec, keep_alive=60)
        lease.release()
        return lease.record

    record = asyncio.run(scenario())
    folder = state_dir / "kept"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / f"{state.key_for(spec.url)}.json").stat().st_mode & 0o777 == 0o600
    assert Path(record.socket).stat().st_mode & 0o777 == 0o600
    shown = client.describe(record)
    assert shown["pid"] == record.server_pid and shown["sessions"] == 0
    assert shown["memory_bytes"] > 0 and 0 < shown["left_s"] <= 60
    assert [r.server_pid for r in client.stop_all(state_dir)] == [record.server_pid]
    assert gone(record.server_pid) and gone(record.keeper_pid)
    assert state.load_all(state_dir) == []


def test_a_lease_keeps_the_server_past_keep_alive(state_dir: Path) -> None:
    spec = spec_for(free_port())

    async def scenario() -> tuple[bool, int]:
        lease = await start(state_dir, spec, keep_alive=0.5)
        await asyncio.sleep(2.0)
        alive = psutil.pid_exists(lease.record.server_pid)
        lease.release()
        return alive, lease.record.server_pid

    alive, pid = asyncio.run(scenario())
    assert alive
    assert gone(pid)


def test_a_different_server_replaces_an_idle_one_and_refuses_a_busy_one(state_dir: Path) -> None:
    port = free_port()

    async def scenario() -> tuple[int, int, str]:
        first = await start(state_dir, spec_for(port), keep_alive=60)
        first.release()
        await asyncio.sleep(0.3)
        second = await start(state_dir, spec_for(port, "other"), keep_alive=60)
        try:
            await start(state_dir, spec_for(port), keep_alive=60)
        except client.KeepError as exc:
            message = str(exc)
        else:
            message = ""
        second.release()
        return first.record.server_pid, second.record.server_pid, message

    old, new, message = asyncio.run(scenario())
    assert old != new and gone(old)
    assert "for another anyclaude session" in message


HOLDER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from anyclaude.keep import client

    async def main():
        spec = client.Spec(mode="test", model="tiny", url=sys.argv[2], argv=sys.argv[3:])
        async with client.slot(Path(sys.argv[1]), spec.url, 1.0) as slot:
            lease = await slot.start(spec, Path(sys.argv[1]) / "server.log")
        print(lease.record.server_pid, lease.record.keeper_pid, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
""")


def test_sigkilled_run_leaves_nothing_after_keep_alive(state_dir: Path) -> None:
    spec = spec_for(free_port())
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(state_dir), spec.url,
                               *spec.argv], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        server_pid, keeper_pid = map(int, holder.stdout.readline().split())
        assert psutil.pid_exists(server_pid)
    finally:
        holder.kill()
        holder.wait()
    assert gone(server_pid) and gone(keeper_pid)
    assert state.load_all(state_dir) == []


def test_sigkilled_keeper_takes_its_server_along(state_dir: Path) -> None:
    spec = spec_for(free_port())

    async def scenario() -> state.Record:
        lease = await start(state_dir, spec, keep_alive=600)
        lease.release()
        return lease.record

    record = asyncio.run(scenario())
    os.kill(record.keeper_pid, signal.SIGKILL)
    assert gone(record.server_pid)
    assert state.load_all(state_dir) == []  # the stale record is dropped on reading


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("30s", 30.0), ("10m", 600.0), ("1h", 3600.0), ("1h30m", 5400.0), ("90", 90.0),
    ("2.5m", 150.0)])
def test_durations(text: str, seconds: float) -> None:
    assert state.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "-1", "m", "10x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        state.parse_duration(text)


def test_two_runs_starting_at_once_share_one_server(state_dir: Path) -> None:
    spec = spec_for(free_port())

    async def scenario() -> list[client.Lease]:
        leases = await asyncio.gather(*(start(state_dir, spec, keep_alive=1.0)
                                        for _ in range(3)))
        for lease in leases:
            lease.release()
        return list(leases)

    leases = asyncio.run(scenario())
    assert len({lease.record.server_pid for lease in leases}) == 1
    assert sum(lease.started for lease in leases) == 1
    assert gone(leases[0].record.server_pid)
