"""A stand-in ssh: "remote" hosts on loopback addresses, served by a local fake sshd.

`mlx.launch` starts every rank whose host is not spelled `127.0.0.1` through
`ssh -tt host 'script'`, and anyclaude's doctor asks hosts questions through
`ssh -o BatchMode=yes host 'command'`. With `FakeSshd` running and its `ssh` first on
PATH, a host such as `127.0.0.2` becomes a "remote" machine that is really this one, so
those paths run for real. What matters is kept faithful:

* The remote commands are children of the fake sshd, a process tree of its own (like
  another machine's): nothing anyclaude does to its own process tree reaches them. The
  only link is the connection, a unix socket standing in for TCP.
* A command runs under `bash -c` in a fresh login environment (HOME, USER, PATH...), not
  the caller's: whatever the ranks need must be passed explicitly, as with real ssh.
* With `-t`/`-tt` the command gets a pseudo-terminal as its controlling terminal. When the
  connection goes away (the ssh client exits or is killed by any signal), the sshd closes
  the terminal, the kernel hangs it up and the command gets SIGHUP, as on a real host.
  Without a terminal the command is left running, as a real remote command would be.
* Hosts outside 127.0.0.0/8 (and `localhost`) are unreachable: `Connection refused`,
  exit status 255; `FAKE_SSH_DOWN` (comma-separated) makes loopback hosts unreachable too.
  `FAKE_SSH_ARGV` names a file each ssh command line is appended to (JSON, one a line).

Wire format: the client sends one JSON line (host, command, tty) then its stdin; the
server sends frames of one type byte (`o` output, `x` exit status) and a 4-byte length.
Only the standard library is used: the client is copied next to a shebang of this Python.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

WITH_VALUE = set("BbcDEeFIiJLlmOoPpQRSWw")
LOGIN_PATH = "/usr/local/bin:/usr/bin:/bin"
SOCKET_VAR = "FAKE_SSHD_SOCKET"


# -- the client: `ssh` -------------------------------------------------------------------

def parse(argv: list[str]) -> tuple[bool, bool, str, str]:
    """(wants a terminal, quiet, host, command) from ssh's command line."""
    tty, quiet, i = False, False, 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
        flags = argv[i][1:]
        for j, flag in enumerate(flags):
            if flag in WITH_VALUE:
                value = flags[j + 1:] or (argv[i + 1] if i + 1 < len(argv) else "")
                quiet = quiet or (flag == "o" and value.lower() == "loglevel=quiet")
                if j == len(flags) - 1:
                    i += 1
                break
            tty = tty or flag == "t"
            quiet = quiet or flag == "q"
        i += 1
    if i < len(argv) and argv[i] == "--":
        i += 1
    if i >= len(argv):
        sys.exit("usage: ssh [options] host [command]")
    return tty, quiet, argv[i], " ".join(argv[i + 1:])


def reachable(host: str) -> bool:
    name = host.rpartition("@")[2]
    if name in os.environ.get("FAKE_SSH_DOWN", "").split(","):
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def client(argv: list[str], socket_path: str) -> int:
    if record := os.environ.get("FAKE_SSH_ARGV"):  # for tests of the options ssh is given
        with open(record, "a", encoding="utf-8") as out:
            out.write(json.dumps(argv) + "\n")
    tty, quiet, host, command = parse(argv)
    if not reachable(host):
        if not quiet:
            print(f"ssh: connect to host {host.rpartition('@')[2]} port 22: Connection "
                  "refused", file=sys.stderr)
        return 255
    if not command:
        print("fake ssh: an interactive login is not supported", file=sys.stderr)
        return 255
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(socket_path)
    conn.sendall(json.dumps({"host": host, "command": command, "tty": tty}).encode() + b"\n")
    stdin, buffer, code = sys.stdin.fileno(), b"", 255
    inputs = [conn, stdin]
    while True:
        ready, _, _ = select.select(inputs, [], [])
        if stdin in ready:
            data = os.read(stdin, 65536)
            if data:
                conn.sendall(data)
            else:  # ssh sends EOF on; with a terminal, the remote side ignores it
                inputs.remove(stdin)
                if not tty:
                    conn.shutdown(socket.SHUT_WR)
        if conn in ready:
            data = conn.recv(65536)
            if not data:
                return code
            buffer += data
            while len(buffer) >= 5:
                kind, size = buffer[:1], struct.unpack(">I", buffer[1:5])[0]
                if len(buffer) < 5 + size:
                    break
                payload, buffer = buffer[5:5 + size], buffer[5 + size:]
                if kind == b"o":
                    os.write(sys.stdout.fileno(), payload)
                else:
                    code = int(payload)


# -- the server: the "remote hosts" --------------------------------------------------------

def login_env() -> dict[str, str]:
    home = os.environ.get("HOME", "/")
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "root"
    return {"HOME": home, "USER": user, "LOGNAME": user, "SHELL": "/bin/bash",
            "PATH": LOGIN_PATH, "LANG": os.environ.get("LANG", "C.UTF-8")}


def _take_terminal() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _frame(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def session(conn: socket.socket) -> None:
    """One connection: run the command, relay its terminal (or pipes) both ways, report
    its exit status; when the client goes first, close the terminal (a hang-up)."""
    with conn:
        line = b""
        while not line.endswith(b"\n"):
            chunk = conn.recv(1)
            if not chunk:
                return
            line += chunk
        header = json.loads(line)
        env = login_env()
        argv = ["/bin/bash", "-c", header["command"]]
        if header["tty"]:
            master, slave = os.openpty()
            proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                    cwd=env["HOME"], preexec_fn=_take_terminal)
            os.close(slave)
            out_fd, in_fd = master, master
        else:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=env, cwd=env["HOME"],
                                    start_new_session=True)
            assert proc.stdout is not None and proc.stdin is not None
            out_fd, in_fd = proc.stdout.fileno(), proc.stdin.fileno()
        client_gone = False
        inputs: list[int | socket.socket] = [out_fd, conn]
        while out_fd in inputs:
            ready, _, _ = select.select(inputs, [], [])
            if out_fd in ready:
                try:
                    data = os.read(out_fd, 65536)
                except OSError:  # EIO: nobody has the terminal open any more
                    data = b""
                if not data:
                    inputs.remove(out_fd)
                    break
                try:
                    conn.sendall(_frame(b"o", data))
                except OSError:
                    client_gone = True
                    break
            if conn in ready:
                data = conn.recv(65536)
                if data:
                    os.write(in_fd, data)
                elif header["tty"]:  # the connection dropped
                    client_gone = True
                    break
                else:  # end of the command's input; a dropped client shows when we write
                    inputs.remove(conn)
                    assert proc.stdin is not None
                    proc.stdin.close()
        if client_gone:
            if header["tty"]:
                os.close(master)  # the hang-up
            else:  # a broken pipe when it next writes
                for pipe in (proc.stdin, proc.stdout):
                    if pipe is not None:
                        pipe.close()
            threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it goes
            return
        code = proc.wait()
        if header["tty"]:
            os.close(master)
        with_code = code if code >= 0 else 255
        with contextlib.suppress(OSError):
            conn.sendall(_frame(b"x", str(with_code).encode()))


def serve(socket_path: str) -> None:
    """Accept connections until SIGTERM; then stop every "remote" process too."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=session, args=(conn,), daemon=True).start()


def install(bin_dir: Path, socket_path: Path, python: str = sys.executable) -> Path:
    """Write `bin_dir/ssh`, a client of the fake sshd at `socket_path`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / "ssh"
    source = Path(__file__).read_text(encoding="utf-8")
    target.write_text(f"#!{python}\n" + source.replace(
        'SOCKET_VAR = "FAKE_SSHD_SOCKET"', f"SOCKET_VAR = {str(socket_path)!r}", 1) +
        "\n\nif __name__ == '__main__':\n    sys.exit(client(sys.argv[1:], SOCKET_VAR))\n",
        encoding="utf-8")
    target.chmod(0o755)
    return target


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "serve":
    serve(sys.argv[2])
