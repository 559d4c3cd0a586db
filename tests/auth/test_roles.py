"""Roles imply lesser roles; secret-reader implies nothing."""

from __future__ import annotations

from porter_bundle.auth.roles import LOCAL, Principal


def test_implied_roles():
    op = Principal.bound("op", {"operator": ["a"]})
    assert op.has("viewer", "a") and op.has("editor", "a") and op.has("operator", "a")
    assert not op.has("secret-reader", "a") and not op.has("viewer", "b")
    secret = Principal.bound("s", {"secret-reader": ["a"]})
    assert secret.has("secret-reader", "a") and not secret.has("viewer", "a")


def test_star_and_visibility():
    p = Principal.bound("p", {"viewer": ["a", ""], "editor": ["*"]})
    assert p.namespaces("viewer") is None  # editor everywhere implies viewer everywhere
    q = Principal.bound("q", {"viewer": ["a", ""]})
    assert q.namespaces("viewer") == frozenset({"a", ""})
    assert q.has_anywhere("viewer") and not q.has_everywhere("viewer")
    assert LOCAL.has_everywhere("secret-reader") and LOCAL.has_everywhere("operator")
