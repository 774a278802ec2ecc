"""Send one outbox payload to a target: a local Maildir, an SMTP relay, or an IMAP folder.

Each target raises :class:`TransientDeliveryError` (retry later) or :class:`PermanentDeliveryError` (dead).
Maildir and IMAP deliveries are idempotent on the outbox key, so a retry after a crash never duplicates.
"""
from __future__ import annotations

import os
import smtplib
import socket
import ssl
from contextlib import suppress
from pathlib import Path

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from gateway.config.loader import resolve_secret
from gateway.config.schema import ImapAccount, Relay
from gateway.errors import PermanentDeliveryError, TransientDeliveryError


def deliver_to_maildir(root: Path, key: str, data: bytes, *, maybe_there: bool = True) -> Path:
    """Write ``data`` into Maildir ``root`` as ``new/<key>``; a file with that key already there is kept.

    Looking for the key in ``cur/`` (where a mail client moves read mail, as ``<key>:2,<flags>``) lists that
    directory, so it is done only when the mail ``maybe_there`` from an earlier try.
    """
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if (root / "new" / key).exists():
        return root / "new" / key
    if maybe_there:
        with os.scandir(root / "cur") as entries:
            if any(entry.name.split(":")[0] == key for entry in entries):
                return root / "cur" / key
    tmp, final = root / "tmp" / key, root / "new" / key
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        directory = os.open(root / "new", os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:  # a full disk or a lost mount is expected to clear up
        tmp.unlink(missing_ok=True)
        raise TransientDeliveryError(f"maildir {root}: {exc.strerror}") from None
    return final


def send_via_relay(relay: Relay, envelope_from: str, recipients: list[str], data: bytes) -> None:
    """Hand the message to the smarthost; 4xx and connection errors are transient, 5xx permanent."""
    try:
        with smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout) as smtp:
            if relay.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if relay.user:
                smtp.login(relay.user, resolve_secret(relay) or "")
            refused = smtp.sendmail(envelope_from, recipients, data)
    except smtplib.SMTPResponseException as exc:
        error = f"relay {relay.host}:{relay.port} answered {exc.smtp_code} {exc.smtp_error!r}"
        raise (PermanentDeliveryError if 500 <= exc.smtp_code < 600 else TransientDeliveryError)(error) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        error = f"relay refused every recipient: {codes}"
        raise (PermanentDeliveryError if all(c >= 500 for c in codes) else TransientDeliveryError)(error) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientDeliveryError(f"relay {relay.host}:{relay.port}: {type(exc).__name__}: {exc}") from None
    if refused:
        raise PermanentDeliveryError(f"relay refused some recipients: {sorted(refused)}")


def connect_imap(account: ImapAccount) -> IMAPClient:
    """A logged-in IMAP client with TLS as configured and a socket timeout always set."""
    context = ssl.create_default_context(cafile=account.ca_file)
    if not account.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    client = IMAPClient(account.host, port=account.port, ssl=account.tls == "implicit",
                        ssl_context=context, timeout=account.timeout)
    try:
        if account.tls == "starttls":
            client.starttls(context)
        secret = resolve_secret(account) or ""
        if account.auth == "xoauth2":
            client.oauth2_login(account.user, secret)
        else:
            client.login(account.user, secret)
    except BaseException:
        with suppress(OSError):  # a failed STARTTLS handshake leaves a closed socket: keep its error, not ours
            client.shutdown()
        raise
    return client


def server_folder_name(client: IMAPClient, folder: str) -> str:
    """``Teams/Support`` in the server's own hierarchy delimiter (Dovecot's Maildir uses ``.``)."""
    listed = client.list_folders(directory="", pattern="")  # LIST "" "" answers with the delimiter only
    delimiter = listed[0][1] if listed and listed[0][1] else b"/"
    return folder.replace("/", delimiter.decode() if isinstance(delimiter, bytes) else delimiter)


def append_to_imap(account: ImapAccount, folder: str, key: str, data: bytes) -> None:
    """APPEND into ``folder`` unless a message with our ``X-Gateway-Delivery`` key is there already."""
    try:
        client = connect_imap(account)
        try:
            folder = server_folder_name(client, folder)
            if not client.folder_exists(folder):
                client.create_folder(folder)
            client.select_folder(folder)
            if client.search(["HEADER", "X-Gateway-Delivery", key]):
                return
            client.append(folder, data)
        finally:
            client.logout()
    except (IMAPClientError, OSError, socket.timeout) as exc:
        raise TransientDeliveryError(f"imap {account.host}/{folder}: {type(exc).__name__}: {exc}") from None
