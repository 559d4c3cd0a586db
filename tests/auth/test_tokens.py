"""The token file: parsing, hashing, reloading on change, keeping the last good file."""

from __future__ import annotations

import logging
import os

import pytest

from porter_bundle.auth.roles import Principal
from porter_bundle.auth.tokens import TokenFile, TokenFileError, hash_token, parse

_H = hash_token("shared")


def _write(path, text):
    path.write_text(text)
    # A rewrite within the same mtime tick and of the same size would look unchanged.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_hash_token_is_sha256_hex():
    assert hash_token("abc") == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_parse_yaml_and_json_and_roles():
    text = f"""
- name: ci
  token: {hash_token("t1")}
  roles: {{operator: [team-a], viewer: "*"}}
- name: cert.example.com
  roles: {{editor: [""]}}
"""
    ci, cert = parse(text)
    assert ci.principal.has("editor", "team-a") and ci.principal.has("viewer", "team-b")
    assert not ci.principal.has("editor", "team-b")
    assert not ci.principal.has("secret-reader", "team-a")
    assert cert.digest is None and cert.principal.has("viewer", "")
    as_json = f'[{{"name": "ci", "token": "{hash_token("t1")}", "roles": {{"viewer": ["x"]}}}}]'
    (entry,) = parse(as_json)
    assert entry.principal.has("viewer", "x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x", "must be a list"),
        ("- {token: sha256:00}", "name must be"),
        ("- {name: a, token: plain-token}", "token must be sha256:"),
        ("- {name: a, token: 'sha256:zz'}", "token must be sha256:"),
        ("- {name: a, roles: {admin: ['*']}}", "unknown role 'admin'"),
        ("- {name: a, roles: {viewer: team-a}}", "a list of namespaces"),
        ("- {name: a}\n- {name: a}", "appears twice"),
        ("- {name: a, password: x}", "unknown keys"),
        ("[unclosed", "not YAML or JSON"),
        (f"- {{name: a, token: '{_H}'}}\n- {{name: b, token: '{_H}'}}", "same token"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(TokenFileError, match=message):
        parse(text)


def test_plain_token_never_in_error():
    with pytest.raises(TokenFileError) as err:
        parse("- {name: a, token: my-secret-token}")
    assert "my-secret-token" not in str(err.value)


def test_authenticate_and_reload_on_change(tmp_path, caplog):
    path = tmp_path / "tokens.yaml"
    _write(path, f"- {{name: a, token: '{hash_token('one')}', roles: {{viewer: [x]}}}}\n")
    tokens = TokenFile(path)
    found = tokens.authenticate("one")
    assert isinstance(found, Principal) and found.name == "a"
    assert tokens.authenticate("two") is None
    assert tokens.principal("a") is not None and tokens.principal("b") is None

    # Revoke "one", add "two": no restart.
    _write(path, f"- {{name: b, token: '{hash_token('two')}', roles: {{editor: [x]}}}}\n")
    assert tokens.authenticate("one") is None
    b = tokens.authenticate("two")
    assert b is not None and b.has("editor", "x")

    # A broken file keeps the last good one, and says so.
    with caplog.at_level(logging.ERROR, logger="porter_bundle.auth.tokens"):
        _write(path, "- {name: c, token: not-a-hash}\n")
        assert tokens.authenticate("two") is not None
    assert "last good one stays in force" in caplog.text
    # ... also when the file disappears.
    path.unlink()
    assert tokens.authenticate("two") is not None
    # And a fixed file is picked up again.
    _write(path, f"- {{name: c, token: '{hash_token('three')}'}}\n")
    assert tokens.authenticate("three") is not None and tokens.authenticate("two") is None


def test_unreadable_at_start_is_an_error(tmp_path):
    with pytest.raises(TokenFileError):
        TokenFile(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: a, token: x}")
    with pytest.raises(TokenFileError):
        TokenFile(bad)


def test_empty_file_means_no_principals(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text("")
    assert TokenFile(path).authenticate("anything") is None
