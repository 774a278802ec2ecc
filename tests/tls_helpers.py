"""Test certificates made with the ``openssl`` command: a test CA with a server certificate, and a self-signed one."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SUBJECT_ALT_NAME = "subjectAltName=IP:127.0.0.1,DNS:localhost"
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the test CA's certificate: what ``ca_file`` names
    cert: Path  # for 127.0.0.1, issued by the test CA
    key: Path
    self_signed: Path  # for 127.0.0.1, issued by nobody
    self_signed_key: Path


def openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("`openssl` not found: install it with `apt-get install -y openssl`")
    done = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr}")


def make_certificates(directory: Path) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Gateway Test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory)
    openssl("req", *EC_KEY, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=directory)
    (directory / "server.ext").write_text(f"{SUBJECT_ALT_NAME}\nbasicConstraints=CA:FALSE\n"
                                          "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                                          "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=directory)
    openssl("req", "-x509", *EC_KEY, "-keyout", "self.key", "-out", "self.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", SUBJECT_ALT_NAME, cwd=directory)
    return Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                        directory / "self.pem", directory / "self.key")
