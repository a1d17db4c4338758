"""The admin verbs of the command line against a running server."""

import asyncio
import re

import pytest

from qroute.cli import main

ENVIRONMENT = ("QROUTE_TARGET", "QROUTE_API_KEY", "QROUTE_ADMIN_KEY")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def test_admin_verbs(api, tmp_path, capsys, monkeypatch):
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    (server_dir / "admin.key").write_text(api.admin_key + "\n")

    async def body(client):
        async def qroute(*argv: str) -> tuple[int, str, str]:
            status = await asyncio.to_thread(main, list(argv))  # main runs its own event loop
            out, err = capsys.readouterr()
            assert "Traceback" not in out + err
            return status, out, err

        target = ["--target", api.target]
        # admin verbs find the admin key in the server's data dir
        status, out, _ = await qroute("account", "create", "Acme", "--time-zone", "Europe/Berlin", *target,
                                      "--data-dir", str(server_dir))
        assert status == 0
        account_id = re.fullmatch(r"created account (\w+) \(Acme, Europe/Berlin\)\n", out).group(1)
        status, out, _ = await qroute("account", "list", *target, "--key", api.admin_key)
        assert status == 0 and account_id in out and "Acme" in out and "Test account" in out
        status, out, _ = await qroute("key", "create", account_id, "--description", "cli", *target,
                                      "--data-dir", str(server_dir))
        assert status == 0
        key_id = re.match(r"created API key (\w+) ", out).group(1)
        secret = out.splitlines()[-1]
        status, out, _ = await qroute("key", "list", account_id, *target, "--data-dir", str(server_dir))
        assert status == 0 and key_id in out and "cli" in out

        # account verbs: target and key from the environment
        monkeypatch.setenv("QROUTE_TARGET", api.target)
        monkeypatch.setenv("QROUTE_API_KEY", secret)
        status, out, _ = await qroute("queue", "create", "sales", "--name", "Sales", "--router", "most_idle",
                                      "--ring-timeout", "15", "--tier-expansion", "30:2", "--hold-treatment", "moh")
        assert status == 0 and out.startswith("created queue sales (Sales): router most_idle, ring timeout 15 s")
        status, out, err = await qroute("queue", "create", "bad", "--name", "", "--ring-timeout", "0")
        assert status == 1 and out == ""
        assert err == ("qroute: INVALID_ARGUMENT: queue.name: must be 1 to 128 characters; "
                       "queue.ring_timeout: must be >= 1\n")
        status, out, _ = await qroute("recipient", "create", "ann", "--name", "Ann", "--skill", "en=5", "fr=3")
        assert status == 0 and out == "created recipient ann (Ann): skills en=5, fr=3\n"
        status, out, _ = await qroute("recipient", "list")
        assert status == 0 and re.search(r"ann\s+Ann\s+en=5 fr=3", out)
        status, out, _ = await qroute("member", "add", "sales", "ann", "--tier", "2")
        assert status == 0 and out == "queue sales: ann (tier 2)\n"
        status, _, err = await qroute("member", "add", "sales", "ghost")
        assert status == 1 and err.startswith("qroute: NOT_FOUND: recipient ghost")
        status, out, _ = await qroute("member", "list", "sales")
        assert status == 0 and re.search(r"ann\s+2\s+0", out)
        status, out, _ = await qroute("queue", "list")
        assert status == 0 and re.search(r"sales\s+Sales\s+most_idle\s+15 s", out)
        status, out, _ = await qroute("key", "create", account_id, "--recipient", "ann", *target,
                                      "--key", api.admin_key)
        assert status == 0 and "acting for recipient ann only" in out
        status, out, _ = await qroute("key", "list", account_id, *target, "--key", api.admin_key)
        assert status == 0 and re.search(r"\w+\s+-?\s*ann\s", out)
        status, _, err = await qroute("key", "create", account_id, "--recipient", "ghost", *target,
                                      "--key", api.admin_key)
        assert status == 1 and err.startswith("qroute: NOT_FOUND")

        async with api.client(secret) as acme:
            await acme.enqueue("sales")
            await acme.enqueue("sales")
        status, out, _ = await qroute("queue", "status")
        assert status == 0 and "WAITING" in out.splitlines()[0]
        assert re.search(r"sales\s+2\s+\d:\d\d\s+-\s+0:00\s+0/1\s+0\s+2\s+0\s+0", out)
        status, _, err = await qroute("queue", "status", "nowhere")
        assert status == 1 and err == "qroute: NOT_FOUND: queue nowhere not found\n"

        status, out, _ = await qroute("key", "revoke", key_id, "--key", api.admin_key)
        assert status == 0 and out == f"revoked API key {key_id}\n"
        status, _, err = await qroute("queue", "list")
        assert status == 1 and err.startswith("qroute: UNAUTHENTICATED")
        # account verbs with the admin key: told, not crashed
        status, _, err = await qroute("queue", "list", "--key", api.admin_key)
        assert status == 1 and err.startswith("qroute: PERMISSION_DENIED")

    api.run(body, timeout=20)


def test_errors_are_one_line(capsys):
    assert main(["queue", "list"]) == 1
    assert capsys.readouterr().err == "qroute: no API key: pass --key or set $QROUTE_API_KEY\n"
    assert main(["account", "list", "--data-dir", "/nonexistent"]) == 1
    assert "run on the server's data dir" in capsys.readouterr().err
    assert main(["queue", "list", "--target", "127.0.0.1:1", "--key", "qr_x_y"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qroute: UNAVAILABLE: ") and err.count("\n") == 1
    assert main(["queue", "list", "--key", "qr_x_y", "--tls-ca", "/nonexistent.pem"]) == 1
    assert capsys.readouterr().err == "qroute: --tls-ca /nonexistent.pem: no such file\n"
