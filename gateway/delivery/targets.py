"""Send one outbox payload to a target: a local Maildir, an SMTP relay, or an IMAP folder.

Each target raises :class:`TransientDeliveryError` (retry later) or :class:`PermanentDeliveryError` (dead).
Maildir and IMAP deliveries are idempotent on the outbox key, so a retry after a crash never duplicates.
"""
from __future__ import annotations

import ctypes
import os
import smtplib
import socket
import ssl
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from gateway.config.loader import resolve_secret
from gateway.config.schema import ImapAccount, Relay
from gateway.delivery.relay_auth import relay_login
from gateway.errors import PermanentDeliveryError, TransientDeliveryError

_LIBC = ctypes.CDLL(None, use_errno=True)  # for syncfs(2), which the os module lacks (Linux)


def deliver_to_maildir(root: Path, key: str, data: bytes, *, maybe_there: bool = True) -> Path:
    """Write ``data`` into Maildir ``root`` as ``new/<key>`` (into ``tmp/``, then renamed); the same bytes
    already there are kept.

    Nothing is synced here: :func:`sync_filesystems` makes a whole batch durable at once (a sync per file cost
    more than the rest of the delivery). Until then a crash may leave the file empty or cut short, so a retry
    (``maybe_there``) compares the file it finds with ``data`` and writes it again if they differ. A retry also
    looks for the key in ``cur/``, where a mail client moves read mail (as ``<key>:2,<flags>``).
    """
    final, tmp = root / "new" / key, root / "tmp" / key
    if maybe_there:
        with suppress(FileNotFoundError):
            if final.read_bytes() == data:
                return final
        with suppress(FileNotFoundError), os.scandir(root / "cur") as entries:
            if any(entry.name.split(":")[0] == key for entry in entries):
                return root / "cur" / key
    try:
        try:
            tmp.write_bytes(data)
        except FileNotFoundError:  # a Maildir not made yet (or removed meanwhile)
            for sub in ("tmp", "new", "cur"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
        os.replace(tmp, final)
    except OSError as exc:  # a full disk or a lost mount is expected to clear up
        tmp.unlink(missing_ok=True)
        raise TransientDeliveryError(f"maildir {root}: {exc.strerror}") from None
    return final


def sync_filesystems(directories: Iterable[Path]) -> None:
    """Write everything on the filesystems holding ``directories`` to disk, with one ``syncfs`` per filesystem
    (the files and the renames that put them in place). Raises OSError if the kernel reports a failed write."""
    synced: set[int] = set()
    for directory in directories:
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            device = os.fstat(descriptor).st_dev
            if device not in synced:
                if _LIBC.syncfs(descriptor) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, os.strerror(error), str(directory))
                synced.add(device)
        finally:
            os.close(descriptor)


def send_via_relay(relay: Relay, envelope_from: str, recipients: list[str], data: bytes) -> None:
    """Hand the message to the smarthost; 4xx and connection errors are transient, 5xx permanent."""
    try:
        with smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout) as smtp:
            if relay.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if relay.user:
                relay_login(smtp, relay)
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
