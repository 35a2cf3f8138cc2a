"""The broker rights table and the Mosquitto files generated from it."""

from __future__ import annotations

import base64
import hashlib

from gridsim_shared import access


def _acl(base: str = "gridsim") -> dict[str, set[str]]:
    users: dict[str, set[str]] = {}
    current = ""
    for line in access.mosquitto_acl(base).splitlines():
        if line.startswith("user "):
            current = line.split()[1]
            users[current] = set()
        elif line.startswith("topic "):
            users[current].add(line.removeprefix("topic "))
    return users


def test_every_user_has_rights_and_only_its_own_reply_namespace() -> None:
    acl = _acl()
    assert set(acl) == set(access.USERS)
    for user, lines in acl.items():
        readable = {line.split()[1] for line in lines if line.split()[0] in {"read", "readwrite"}}
        replies = {topic for topic in readable if "/reply/" in topic}
        assert replies <= {f"gridsim/v1/reply/{user}/#"}, user
        assert not any(topic in {"#", "gridsim/#", "gridsim/v1/#"} for topic in readable), user


def test_the_dashboard_only_reads() -> None:
    acl = _acl()["dashboard"]
    assert {line for line in acl if not line.startswith("read ")} == {"write gridsim/v1/status/dashboard/#"}
    assert "read gridsim/v1/reading/#" in acl
    assert "read gridsim/v1/rollup/#" in acl


def test_only_services_answer_and_only_the_clock_owner_ticks() -> None:
    acl = _acl()
    repliers = {user for user, lines in acl.items() if "write gridsim/v1/reply/#" in lines}
    assert repliers == set(access.SERVICES)
    clock_writers = {
        u for u, lines in acl.items() if {"write gridsim/v1/clock", "readwrite gridsim/v1/clock"} & lines
    }
    assert clock_writers == {"meter-sim"}
    senders = {
        u for u, lines in acl.items() if any(line.startswith("write gridsim/v1/cmd/") for line in lines)
    }
    assert senders == {"gateway", "feasibility", "utility", "operator"}


def test_superusers_for_fixtures_and_another_base() -> None:
    text = access.mosquitto_acl("t-1", users=["billing"], superusers=["gridsim-test"])
    assert "topic write t-1/v1/event/#" in text
    assert text.rstrip().endswith("user gridsim-test\ntopic readwrite #")


def test_password_hashes_are_mosquittos() -> None:
    line = access.mosquitto_passwords({"u1": "secret"}).strip()
    user, hashed = line.split(":", 1)
    _, kind, rounds, salt, digest = hashed.split("$")
    assert (user, kind, rounds) == ("u1", "7", "101")
    expected = hashlib.pbkdf2_hmac("sha512", b"secret", base64.b64decode(salt), 101, 64)
    assert base64.b64decode(digest) == expected
    assert access.password_hash("secret") != access.password_hash("secret")  # salted
