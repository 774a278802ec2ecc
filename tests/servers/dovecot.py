"""A throwaway Dovecot IMAP server on 127.0.0.1 for tests.

Everything (config, base_dir, state_dir, passwd-file, homes, log) lives in one
temp dir under $TMPDIR, which the ``dovecot`` user must be able to traverse.
Requires root and the ``dovecot-imapd`` package; a missing binary is an error,
never a skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import suppress
from pathlib import Path

from imapclient import IMAPClient

HOST = "127.0.0.1"
MAIL_USER = "dovecot"

_CONFIG = """\
protocols = imap
listen = {host}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = {mail_user}
default_internal_group = {mail_user}
first_valid_uid = {uid}
last_valid_uid = {uid}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_user} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {imaps_port}
  }}
}}
"""


class _PortInUse(Exception):
    """Our free port was taken before Dovecot bound it."""


def _find_binary(name: str) -> str:
    """Path of a Dovecot program; RuntimeError (so tests fail, not skip) when absent."""
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"]))
    if path is None:
        raise RuntimeError(f"`{name}` not found: install Dovecot with `apt-get install -y dovecot-imapd`")
    return path


def _mail_ids() -> tuple[int, int]:
    """uid and gid of the ``dovecot`` account that owns the mail homes."""
    try:
        account = pwd.getpwnam(MAIL_USER)
    except KeyError:
        raise RuntimeError(f"no `{MAIL_USER}` user: install Dovecot with `apt-get install -y dovecot-imapd`") from None
    return account.pw_uid, account.pw_gid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class DovecotServer:
    """One Dovecot master process with its own config and users."""

    def __init__(self, start_timeout: float = 10.0, client_timeout: float = 10.0,
                 tls: tuple[Path, Path] | None = None) -> None:
        """``tls``: certificate and key files; then Dovecot requires TLS (``ssl = required``) and also listens
        for implicit TLS on :attr:`imaps_port`. Plain logins from loopback still work (Dovecot counts them secure)."""
        self.start_timeout = start_timeout
        self.tls = tls
        self.client_timeout = client_timeout
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.root.chmod(0o755)  # the dovecot user must reach homes and passwd
        self.config_path = self.root / "dovecot.conf"
        self.log_path = self.root / "dovecot.log"
        self._passwd = self.root / "passwd"
        self._passwd.touch(mode=0o644)
        self._port = _free_port()
        self.imaps_port = _free_port() if tls else 0
        self._process: subprocess.Popen[bytes] | None = None
        self._passwords: dict[str, str] = {}
        self._started = False
        (self.root / "home").mkdir()

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> None:
        """Start and wait for the IMAP greeting (polled, no fixed sleep).

        The first start retries on a fresh port if another process took ours;
        restarts keep the port so existing clients can reconnect.
        """
        binary = _find_binary("dovecot")
        if self._process is not None:
            raise RuntimeError("Dovecot is already running")
        if os.geteuid() != 0:
            raise RuntimeError("DovecotServer must run as root (it drops to the dovecot/dovenull users)")
        for attempt in range(1 if self._started else 3):
            if attempt:
                self._port = _free_port()
                self.imaps_port = _free_port() if self.tls else 0
            try:
                self._launch(binary)
            except _PortInUse:
                continue
            self._started = True
            return
        raise RuntimeError(f"Dovecot could not listen on {HOST}:{self._port}:\n{self._startup_output()}")

    def _launch(self, binary: str) -> None:
        uid, _ = _mail_ids()
        self.config_path.write_text(
            _CONFIG.format(host=HOST, root=self.root, port=self._port, mail_user=MAIL_USER, uid=uid,
                           imaps_port=self.imaps_port, ssl=self._ssl_settings())
        )
        with open(self.root / "master.stderr", "wb") as stderr:
            self._process = subprocess.Popen(
                [binary, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self.stop()  # reaps children the master may have forked
                output = self._startup_output()
                if "Address already in use" in output:
                    raise _PortInUse
                raise RuntimeError(f"Dovecot exited on start:\n{output}")
            if self._greets():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"Dovecot did not greet on {HOST}:{self._port} within {self.start_timeout}s:\n"
                           f"{self._startup_output()}")

    def _ssl_settings(self) -> str:
        if self.tls is None:
            return "ssl = no"
        cert, key = self.tls
        return f"ssl = required\nssl_cert = <{cert}\nssl_key = <{key}"

    def stop(self) -> None:
        """Stop the master and every child; safe to call twice or after a failed start."""
        process, self._process = self._process, None
        if process is None:
            return
        # The master ran as session leader, so its children share its process group.
        # SIGTERM to the whole group stops in ms; SIGTERM to the master alone takes ~1.1 s.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        with suppress(ProcessLookupError):  # stragglers, or a master that ignored SIGTERM
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)

    def restart(self) -> None:
        """Stop and start again on the same port; mail and users are kept."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server and delete its temp dir."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def add_user(self, name: str, password: str) -> None:
        """Add a login; Dovecot rereads the passwd-file on change, so no restart is needed."""
        home = self.root / "home" / name
        home.mkdir(exist_ok=True)
        os.chown(home, *_mail_ids())
        self._passwords[name] = password
        with self._passwd.open("a") as passwd:
            passwd.write(f"{name}:{{PLAIN}}{password}\n")

    def kick(self, user: str) -> None:
        """Drop every open IMAP session of ``user``."""
        self._doveadm("kick", user)

    def set_uidvalidity(self, user: str, mailbox: str, value: int) -> None:
        """Force a new UIDVALIDITY, as after a server-side mailbox rebuild."""
        self._doveadm("mailbox", "update", "-u", user, "--uid-validity", str(value), mailbox)

    def create_folder(self, user: str, name: str) -> None:
        """Create mailbox ``name`` for ``user`` server-side."""
        self._doveadm("mailbox", "create", "-u", user, name)

    def client(self, user: str, password: str) -> IMAPClient:
        """An IMAPClient logged in as ``user``, with a socket timeout."""
        imap = IMAPClient(HOST, port=self._port, ssl=False, timeout=self.client_timeout)
        imap.login(user, password)
        return imap

    def append(self, user: str, mailbox: str, raw: bytes) -> int | None:
        """APPEND ``raw`` to ``mailbox`` of a user made by add_user; returns the new UID (UIDPLUS)."""
        with self.client(user, self._passwords[user]) as imap:
            response = imap.append(mailbox, raw)
        parts = response.split(b"]")[0].split() if b"APPENDUID" in response else []
        return int(parts[-1]) if len(parts) >= 3 else None

    def log_text(self) -> str:
        """Dovecot's log (all starts of this server), for assertions and failure reports."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _doveadm(self, *args: str) -> str:
        result = subprocess.run(
            [_find_binary("doveadm"), "-c", str(self.config_path), *args],
            capture_output=True, text=True, timeout=30, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def _greets(self) -> bool:
        try:
            with socket.create_connection((HOST, self._port), timeout=1) as sock:
                greeted = sock.recv(64).startswith(b"* OK")
                sock.sendall(b"a LOGOUT\r\n")  # keeps the log free of "connection reset" noise
                return greeted
        except OSError:
            return False

    def _startup_output(self) -> str:
        stderr = self.root / "master.stderr"
        return (stderr.read_text(errors="replace") if stderr.exists() else "") + self.log_text()
