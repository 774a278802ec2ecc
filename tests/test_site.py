"""``gateway init DIR`` writes a site that passes check-config and loads its model; ``gateway send-test`` puts a
mail into a real gateway (the README's "Try it" without swaks)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import tomli_w

from classifier.registry import stored_model
from gateway.config import load_config, parse_config
from tests.conftest import ROOT, free_port
from tests.delivery_helpers import headers_of, wait_for_delivered

GATEWAY = str(Path(sys.executable).parent / "gateway")


def gateway(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GATEWAY, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_init_writes_a_site_that_check_config_accepts(tmp_path: Path) -> None:
    site = tmp_path / "sites" / "acme"
    done = gateway("init", str(site))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"site written to {site}: gateway.toml, templates/, models/, var/")
    checked = gateway("check-config", "--config", str(site / "gateway.toml"), cwd=tmp_path)  # from elsewhere
    assert checked.returncode == 0, checked.stderr
    config = load_config(site / "gateway.toml")
    assert config.gateway.database == f"sqlite:///{site}/var/gateway.db" and config.gateway.mode == "shadow"
    assert config.auto_reply.loop_id == "mail-gateway-acme" and config.classifier.models_dir == site / "models"
    assert sorted(p.name for p in (site / "templates").iterdir()) == sorted(
        p.name for p in (ROOT / "config" / "templates").glob("*.txt.j2"))
    assert stored_model(site / "models").version == (ROOT / "models" / "CURRENT").read_text().strip()
    assert all((site / "var" / "mail" / role / "new").is_dir() for role in config.roles)
    text = (site / "gateway.toml").read_text()
    assert text.count("\n#") > 30 and "docs/providers.md" in text  # commented for the operator


def test_init_never_overwrites_a_site_and_needs_a_checkout(tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert gateway("init", str(site)).returncode == 0
    (site / "gateway.toml").write_text("# changed by the operator\n")
    again = gateway("init", str(site))
    assert again.returncode == 2 and again.stderr == f"error: {site}/gateway.toml exists already: this is a site " \
                                                      "(nothing was changed)\n"
    assert (site / "gateway.toml").read_text() == "# changed by the operator\n"
    elsewhere = gateway("init", str(tmp_path / "other"), "--source", str(tmp_path))
    assert elsewhere.returncode == 2 and "no reply templates there (give --source" in elsewhere.stderr


def test_send_test_delivers_through_the_smtp_ingress_and_names_the_id(config_data: dict[str, Any],
                                                                      start_gateway: Any, tmp_path: Path) -> None:
    gateway_ = start_gateway(parse_config(config_data))
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(tomli_w.dumps(config_data))
    picture = tmp_path / "screen.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    sent = gateway("send-test", "--config", str(config_file), "--server", f"127.0.0.1:{gateway_.smtp.bound_port}",
                   "--attach", str(picture))
    assert sent.returncode == 0, sent.stderr
    assert "via 127.0.0.1:" in sent.stdout and ": 250 2.0.0 Stored as " in sent.stdout
    public_id = sent.stdout.split("Stored as ")[1].split()[0]
    assert sent.stdout.endswith(f"see what happened to it: gateway show {public_id[:12]}\n")
    [delivered] = [f for f in wait_for_delivered(tmp_path / "var", 1, timeout=60) if "outgoing" not in f.parts]
    assert headers_of(delivered)["X-Gateway-Message-Id"] == public_id
    assert b'filename="screen.png"' in delivered.read_bytes()


def test_send_test_without_a_gateway_is_one_line(config_data: dict[str, Any], tmp_path: Path) -> None:
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(tomli_w.dumps(config_data))
    port = free_port()
    done = gateway("send-test", "--config", str(config_file), "--server", f"127.0.0.1:{port}")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"error: cannot send to 127.0.0.1:{port}: [Errno 111] Connection refused")
