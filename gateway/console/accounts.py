"""Console accounts: add, list, remove, and check a password (argon2id hashes, never the password itself)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update

from gateway.errors import GatewayError
from gateway.storage.db import Database
from gateway.storage.models import ConsoleRole, ConsoleUser

#: OWASP's argon2id minimum (19 MiB, 2 passes): a login costs a few tens of milliseconds and no lasting memory
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
#: verified against when the name is unknown, so a wrong name takes as long as a wrong password
_DUMMY_HASH = HASHER.hash("not a password of anyone")


@dataclass(frozen=True)
class Account:
    name: str
    role: ConsoleRole
    session_version: int

    @property
    def is_admin(self) -> bool:
        return self.role == ConsoleRole.ADMIN


def add_user(db: Database, name: str, role: str, password: str) -> None:
    """Create an account; refused for a bad name, an unknown role, a short password or a name in use."""
    if not _NAME.match(name):
        raise GatewayError(f"not a user name: {name!r} (lower-case letters, digits, . _ @ -; up to 64)")
    if role not in {r.value for r in ConsoleRole}:
        raise GatewayError(f"unknown role {role!r}: operator or admin")
    if len(password) < MIN_PASSWORD:
        raise GatewayError(f"the password needs at least {MIN_PASSWORD} characters")
    with db.session() as session:
        if session.scalar(select(ConsoleUser.id).where(ConsoleUser.name == name)) is not None:
            raise GatewayError(f"user {name} exists already")
        session.add(ConsoleUser(name=name, role=ConsoleRole(role), password_hash=HASHER.hash(password)))


def remove_user(db: Database, name: str) -> None:
    with db.session() as session:
        if not session.execute(delete(ConsoleUser).where(ConsoleUser.name == name)).rowcount:
            raise GatewayError(f"no user {name}")


def list_users(db: Database) -> list[tuple[str, str, str]]:
    """(name, role, created) of every account, by name."""
    with db.reading() as session:
        return [(u.name, u.role.value, u.created_at.isoformat(timespec="seconds"))
                for u in session.scalars(select(ConsoleUser).order_by(ConsoleUser.name))]


def account(db: Database, name: str) -> Account | None:
    with db.reading() as session:
        user = session.scalar(select(ConsoleUser).where(ConsoleUser.name == name))
        return Account(user.name, user.role, user.session_version) if user else None


def check_password(db: Database, name: str, password: str) -> Account | None:
    """The account if ``password`` is its password; an outdated hash is replaced by a current one."""
    with db.reading() as session:
        user = session.scalar(select(ConsoleUser).where(ConsoleUser.name == name))
        stored = user.password_hash if user else _DUMMY_HASH
    try:
        HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if HASHER.check_needs_rehash(stored):
        with db.session() as session:
            session.execute(update(ConsoleUser).where(ConsoleUser.id == user.id)
                            .values(password_hash=HASHER.hash(password)))
    return Account(user.name, user.role, user.session_version)


def end_sessions(db: Database, name: str) -> None:
    """Log the user out everywhere: every cookie issued before now stops being accepted."""
    with db.session() as session:
        session.execute(update(ConsoleUser).where(ConsoleUser.name == name)
                        .values(session_version=ConsoleUser.session_version + 1))
