"""The vault: named secrets stored only as Fernet ciphertext, never returned by the API or logged.

`ENCRYPTION_KEY` is a comma list; `MultiFernet` encrypts with the first key and decrypts with any,
so a new key is put first, `agent33 vault rotate` re-encrypts every row, and the old key can then
be dropped. Workflows reference secrets as `{{ secrets.NAME }}`: `secret_context` gives the
expression context a mapping that decrypts only the names the step's expressions mention, and
`mask` replaces every resolved plaintext before step inputs are stored. Functions take `session`
keyword-only and never commit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent33.config import ConfigError, Settings
from agent33.db.models import Secret
from agent33.errors import Agent33Error, NotFound, ValidationFailed

log = structlog.get_logger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MASK = "********"
DEV_KEY_FILE = "encryption.key"
# `secrets.NAME` or `secrets["NAME"]`, not `my_secrets.X` or `steps.a.output.secrets.X`.
SECRET_REF = re.compile(
    r"(?<![A-Za-z0-9_.])secrets\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)"
    r"|\[\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]\s*\])"
)


class SecretUndecryptable(Agent33Error):
    """Wrong key or tampered ciphertext: a clear message instead of a traceback."""

    code = "secret_undecryptable"
    http_status = 500
    retryable = False

    def __init__(self, name: str) -> None:
        super().__init__(
            f"secret {name!r} cannot be decrypted: wrong key or tampered data",
            fields={"name": name},
        )


class UnknownSecret(NotFound):
    """A referenced secret does not exist; retrying cannot help, so steps fail at once."""

    retryable = False

    def __init__(self, name: str) -> None:
        super().__init__(
            f"secret {name!r} does not exist (set it with `agent33 vault set {name}`)",
            fields={"name": name},
        )


class Vault:
    """Fernet encryption over one or more keys: the first encrypts, every key decrypts."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigError("ENCRYPTION_KEY must hold at least one Fernet key")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except (ValueError, TypeError):
            raise ConfigError(
                "ENCRYPTION_KEY must be 32 url-safe base64-encoded bytes (a Fernet key)"
            ) from None

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str, *, name: str = "?") -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise SecretUndecryptable(name) from None

    def rotate(self, ciphertext: str, *, name: str = "?") -> str:
        """The same plaintext encrypted with the primary key (old keys can then be removed)."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretUndecryptable(name) from None


def _dev_key(var_dir: Path) -> str:
    """Read or create `<var_dir>/encryption.key` (0600); created atomically, warned about once."""
    path = var_dir / DEV_KEY_FILE
    if path.is_file():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=var_dir, prefix=".encryption-key-")  # created 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(Fernet.generate_key().decode() + "\n")
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # atomic: a concurrent process's key wins, never a torn file
        except FileExistsError:
            return path.read_text().strip()
    finally:
        os.unlink(tmp)
    log.warning(
        "vault.dev_key_generated",
        path=str(path),
        message=(
            "ENCRYPTION_KEY is not set: generated a development key. Secrets encrypted with it "
            "are lost if this file is lost; set ENCRYPTION_KEY in production."
        ),
    )
    return path.read_text().strip()


def keys_for(settings: Settings) -> list[str]:
    """The configured keys, primary first; in development a generated key when none is set."""
    keys = [key.strip() for key in settings.encryption_key.split(",") if key.strip()]
    if keys:
        return keys
    if settings.is_production:
        raise ConfigError("ENCRYPTION_KEY must be set in production")
    return [_dev_key(settings.var_dir)]


def vault_for(settings: Settings) -> Vault:
    return Vault(keys_for(settings))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ValidationFailed(
            f"secret name {name!r} is invalid: letters, digits and _, not starting with a digit, "
            "at most 100 characters",
            fields={"name": ["Must match ^[A-Za-z_][A-Za-z0-9_]{0,99}$."]},
        )
    return name


def _row(session: Session, name: str, *, lock: bool = False) -> Secret | None:
    query = select(Secret).where(Secret.name == name)
    return session.scalar(query.with_for_update() if lock else query)


def set_secret(*, session: Session, vault: Vault, name: str, value: str) -> Secret:
    """Create or replace a secret; only its ciphertext reaches the database."""
    _check_name(name)
    if not value:
        raise ValidationFailed("secret value must not be empty", fields={"value": ["Required."]})
    ciphertext = vault.encrypt(value)
    row = _row(session, name, lock=True)
    if row is None:
        row = Secret(name=name, ciphertext=ciphertext)
        session.add(row)
    else:
        row.ciphertext = ciphertext
        row.updated_at = _utcnow()
        row.rotated_at = None
    session.flush()
    return row


def get_secret(*, session: Session, vault: Vault, name: str) -> str:
    """The plaintext; for the engine and CLI only, never for an API response."""
    row = _row(session, name)
    if row is None:
        raise UnknownSecret(name)
    return vault.decrypt(row.ciphertext, name=name)


def list_secrets(*, session: Session) -> list[Secret]:
    """Rows by name; callers show names and timestamps only."""
    return list(session.scalars(select(Secret).order_by(Secret.name)))


def delete_secret(*, session: Session, name: str) -> None:
    row = _row(session, name, lock=True)
    if row is None:
        raise UnknownSecret(name)
    session.delete(row)
    session.flush()


def rotate_all(*, session: Session, vault: Vault) -> int:
    """Re-encrypt every row with the primary key; returns how many rows were rewritten."""
    now = _utcnow()
    count = 0
    for row in session.scalars(select(Secret).order_by(Secret.name).with_for_update()):
        row.ciphertext = vault.rotate(row.ciphertext, name=row.name)
        row.rotated_at = now
        count += 1
    session.flush()
    return count


def referenced_secrets(*values: Any) -> set[str]:
    """Secret names the values' expressions mention statically (`secrets.X`, `secrets["X"]`)."""
    text = json.dumps(values, default=str).replace('\\"', '"')
    return {dotted or indexed for dotted, indexed in SECRET_REF.findall(text)}


class SecretValues(Mapping[str, str]):
    """The `secrets` of the expression context: decrypts a name only when an expression reads it.

    Ciphertexts of the referenced names are read up front (one query, while the session is open)
    so decryption needs no session later; `resolved` holds what was decrypted, for `mask`.
    """

    def __init__(
        self,
        ciphertexts: Mapping[str, str],
        referenced: Iterable[str],
        vault: Callable[[], Vault],
    ) -> None:
        self._ciphertexts = dict(ciphertexts)
        self._referenced = set(referenced)
        self._vault_factory = vault
        self._vault: Vault | None = None
        self.resolved: dict[str, str] = {}

    def __contains__(self, name: object) -> bool:
        # Referenced names are "present" so `secrets.X` reaches __getitem__ and its clear error.
        return name in self._referenced or name in self._ciphertexts

    def __getitem__(self, name: str) -> str:
        if name in self.resolved:
            return self.resolved[name]
        ciphertext = self._ciphertexts.get(name)
        if ciphertext is None:
            raise UnknownSecret(name)
        if self._vault is None:
            self._vault = self._vault_factory()
        self.resolved[name] = self._vault.decrypt(ciphertext, name=name)
        return self.resolved[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.resolved))

    def __len__(self) -> int:
        return len(self.resolved)

    def __repr__(self) -> str:
        return f"<secrets {sorted(self._referenced)} (values hidden)>"


def secret_context(session: Session, settings: Settings, *values: Any) -> SecretValues:
    """The lazy `secrets` mapping for a step whose params/when are `values`."""
    names = referenced_secrets(*values)
    ciphertexts: dict[str, str] = {}
    if names:
        query = select(Secret.name, Secret.ciphertext).where(Secret.name.in_(sorted(names)))
        ciphertexts = {name: text for name, text in session.execute(query)}
    return SecretValues(ciphertexts, names, lambda: vault_for(settings))


def mask(value: Any, plaintexts: Iterable[str]) -> Any:
    """`value` with every plaintext replaced by `********`, through dicts, lists and strings."""
    secrets = sorted({p for p in plaintexts if p}, key=len, reverse=True)
    if not secrets:
        return value

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            for secret in secrets:
                item = item.replace(secret, MASK)
            return item
        if isinstance(item, Mapping):
            return {key: walk(inner) for key, inner in item.items()}
        if isinstance(item, list | tuple):
            return [walk(inner) for inner in item]
        return item

    return walk(value)
