"""The vault: Fernet round-trips, rotation across keys, tamper detection and key configuration."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.orm import Session

from agent33.config import ConfigError, Settings, load_settings
from agent33.errors import ValidationFailed
from agent33.security.vault import (
    DEV_KEY_FILE,
    MASK,
    SecretUndecryptable,
    SecretValues,
    UnknownSecret,
    Vault,
    get_secret,
    keys_for,
    list_secrets,
    mask,
    referenced_secrets,
    rotate_all,
    set_secret,
)

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def test_encrypt_decrypt_round_trip_and_ciphertext_hides_the_value() -> None:
    vault = Vault([KEY_A])
    token = vault.encrypt("s3cr3t-value")
    assert "s3cr3t-value" not in token
    assert vault.decrypt(token) == "s3cr3t-value"


def test_old_ciphertext_decrypts_after_a_new_primary_key_is_added() -> None:
    token = Vault([KEY_A]).encrypt("v1")
    assert Vault([KEY_B, KEY_A]).decrypt(token) == "v1"
    with pytest.raises(SecretUndecryptable):
        Vault([KEY_B]).decrypt(token)


def test_tampered_ciphertext_is_a_clear_error_not_a_traceback() -> None:
    vault = Vault([KEY_A])
    token = vault.encrypt("value")
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(SecretUndecryptable) as caught:
        vault.decrypt(tampered, name="API_TOKEN")
    assert str(caught.value) == (
        "secret 'API_TOKEN' cannot be decrypted: wrong key or tampered data"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("value", ["not-a-key", f"{KEY_A},short", "x" * 44])
def test_a_bad_encryption_key_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="^ENCRYPTION_KEY must be 32 url-safe"):
        load_settings({"ENCRYPTION_KEY": value}, dotenv_path=None)


def test_a_comma_list_of_keys_is_accepted_first_key_primary() -> None:
    settings = load_settings({"ENCRYPTION_KEY": f" {KEY_B} , {KEY_A} "}, dotenv_path=None)
    assert keys_for(settings) == [KEY_B, KEY_A]


def test_production_without_a_key_refuses(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY"):
        keys_for(Settings(env="production", var_dir=tmp_path))
    assert not (tmp_path / DEV_KEY_FILE).exists()


def test_development_generates_a_private_key_file_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    first = keys_for(settings)
    path = tmp_path / "var" / DEV_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys_for(settings) == first and len(first) == 1
    Vault(first).decrypt(Vault(first).encrypt("ok"))
    output = capsys.readouterr()
    logged = output.out + output.err
    assert logged.count("vault.dev_key_generated") == 1
    assert first[0] not in logged
    assert [p.name for p in path.parent.iterdir()] == [DEV_KEY_FILE]


def test_names_are_validated(db_session: Session) -> None:
    with pytest.raises(ValidationFailed) as caught:
        set_secret(session=db_session, vault=Vault([KEY_A]), name="1bad-name", value="x")
    assert "name" in caught.value.fields


def test_rotate_all_re_encrypts_with_the_primary_key(db_session: Session) -> None:
    set_secret(session=db_session, vault=Vault([KEY_A]), name="OLD_ONE", value="alpha")
    set_secret(session=db_session, vault=Vault([KEY_A]), name="OLD_TWO", value="beta")
    both = Vault([KEY_B, KEY_A])
    assert get_secret(session=db_session, vault=both, name="OLD_ONE") == "alpha"
    assert rotate_all(session=db_session, vault=both) == 2
    only_b = Vault([KEY_B])
    assert get_secret(session=db_session, vault=only_b, name="OLD_ONE") == "alpha"
    assert get_secret(session=db_session, vault=only_b, name="OLD_TWO") == "beta"
    assert all(row.rotated_at is not None for row in list_secrets(session=db_session))
    with pytest.raises(SecretUndecryptable, match="OLD_ONE"):
        get_secret(session=db_session, vault=Vault([KEY_A]), name="OLD_ONE")


def test_set_replaces_and_unknown_names_are_not_found(db_session: Session) -> None:
    vault = Vault([KEY_A])
    set_secret(session=db_session, vault=vault, name="TOKEN", value="one")
    set_secret(session=db_session, vault=vault, name="TOKEN", value="two")
    assert get_secret(session=db_session, vault=vault, name="TOKEN") == "two"
    assert [row.name for row in list_secrets(session=db_session)] == ["TOKEN"]
    with pytest.raises(UnknownSecret, match="'MISSING'"):
        get_secret(session=db_session, vault=vault, name="MISSING")


def test_only_statically_referenced_names_are_found() -> None:
    params = {
        "a": "Bearer {{ secrets.API_TOKEN }}",
        "b": ['{{ secrets["OTHER"] }}', "{{ steps.x.output.secrets.NOPE }}"],
        "c": "{{ my_secrets.NOPE2 }}",
    }
    assert referenced_secrets(params, None) == {"API_TOKEN", "OTHER"}


def test_lazy_mapping_decrypts_only_what_is_read() -> None:
    vault = Vault([KEY_A])
    calls: list[int] = []

    def factory() -> Vault:
        calls.append(1)
        return vault

    values = SecretValues({"A": vault.encrypt("plain-a")}, {"A", "B"}, factory)
    assert "A" in values and "B" in values and len(values) == 0 and not calls
    assert values["A"] == "plain-a" and values["A"] == "plain-a"
    assert calls == [1] and values.resolved == {"A": "plain-a"}
    assert "plain-a" not in repr(values)
    with pytest.raises(UnknownSecret, match="'B'"):
        values["B"]


def test_mask_replaces_plaintext_everywhere() -> None:
    value = {"h": "Bearer tok", "l": ["tok", {"x": "a-tok-b"}], "n": 3, "tok": None}
    assert mask(value, ["tok", ""]) == {
        "h": f"Bearer {MASK}",
        "l": [MASK, {"x": f"a-{MASK}-b"}],
        "n": 3,
        "tok": None,
    }
    assert mask("anything", []) == "anything"


@pytest.mark.usefixtures("committed_db")
def test_cli_set_list_rotate_delete(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from agent33 import db
    from agent33.cli import vault as vault_cli

    current = {"settings": settings.replace(encryption_key=KEY_A)}
    monkeypatch.setattr(vault_cli, "resolve_settings", lambda: current["settings"])
    runner = CliRunner()
    try:
        refused = runner.invoke(vault_cli.vault_group, ["set", "CLI_TOKEN", "--value", "argv-leak"])
        assert refused.exit_code == 2
        stored = runner.invoke(
            vault_cli.vault_group, ["set", "CLI_TOKEN", "--value-stdin"], input="cli-plain\n"
        )
        assert stored.exit_code == 0, stored.output
        listed = runner.invoke(vault_cli.vault_group, ["list", "--json"])
        assert '"CLI_TOKEN"' in listed.output and "cli-plain" not in listed.output
        current["settings"] = settings.replace(encryption_key=f"{KEY_B},{KEY_A}")
        rotated = runner.invoke(vault_cli.vault_group, ["rotate"])
        assert rotated.exit_code == 0 and "re-encrypted 1 secret " in rotated.output
        with db.session_scope() as session:
            assert get_secret(session=session, vault=Vault([KEY_B]), name="CLI_TOKEN") == (
                "cli-plain"
            )
        assert runner.invoke(vault_cli.vault_group, ["delete", "CLI_TOKEN"]).exit_code == 0
        again = runner.invoke(vault_cli.vault_group, ["delete", "CLI_TOKEN"])
        assert isinstance(again.exception, UnknownSecret)
    finally:
        db.configure(settings)
