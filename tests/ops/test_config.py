"""Settings of serve: file, then $QROUTE_*, then flags; unknown keys are errors."""

from __future__ import annotations

import pytest

from qroute import cli, config


def layered(argv, environ, names=("serve",)):
    parser = cli.build_parser()
    sub = cli._subparser(parser, names)
    sources = config.layer(sub, argv, environ)
    return parser.parse_args([*names, *argv]), sources, sub


def write(tmp_path, text):
    path = tmp_path / "qroute.toml"
    path.write_text(text)
    return str(path)


def test_defaults_without_file_or_env():
    args, sources, _ = layered([], {})
    assert (args.listen, args.sync, args.event_buffer, args.webhook_allow) == ("127.0.0.1:50051", "normal",
                                                                                65_536, [])
    assert sources == {} and args.config is None


def test_flags_override_env_which_overrides_the_file(tmp_path):
    path = write(tmp_path, 'listen = "0.0.0.0:7000"\nsync = "full"\nevent_buffer = 10\n'
                           'data_dir = "/srv/q"\nno_durability = true\nwebhook_allow = ["127.0.0.1/32"]\n')
    environ = {"QROUTE_SYNC": "normal", "QROUTE_EVENT_BUFFER": "20", "QROUTE_LOG_FORMAT": "json"}
    args, sources, _ = layered(["--config", path, "--event-buffer", "30"], environ)
    assert args.listen == "0.0.0.0:7000" and sources["listen"] == f"file {path}"  # file only
    assert args.sync == "normal" and sources["sync"] == "env $QROUTE_SYNC"  # env over file
    assert args.event_buffer == 30  # flag over env over file
    assert args.log_format == "json" and args.data_dir == "/srv/q" and args.no_durability is True
    assert [str(n) for n in args.webhook_allow] == ["127.0.0.1/32"]


def test_a_repeated_flag_replaces_the_files_list(tmp_path):
    path = write(tmp_path, 'webhook_allow = ["127.0.0.1/32"]\n')
    args, _, _ = layered(["--config", path, "--webhook-allow", "10.0.0.0/8"], {})
    assert [str(n) for n in args.webhook_allow] == ["10.0.0.0/8"]
    args, _, _ = layered([], {"QROUTE_CONFIG": path, "QROUTE_WEBHOOK_ALLOW": "10.0.0.0/8, 192.168.0.0/16"})
    assert [str(n) for n in args.webhook_allow] == ["10.0.0.0/8", "192.168.0.0/16"]


@pytest.mark.parametrize("text, message", [
    ('listn = "x:1"\n', "unknown setting listn"),
    ('admin_key = "qr_a_b"\n', "never from a file"),
    ("[server]\nlisten = 'x'\n", "unknown setting server"),
    ('sync = "sometimes"\n', "sync: 'sometimes' is not one of normal, full"),
    ("event_buffer = 0\n", "event_buffer: must be at least 1"),
    ('event_buffer = "many"\n', "event_buffer"),
    ('no_durability = "yes"\n', "expected true or false"),
    ("listen = \n", "config file"),
])
def test_bad_files_are_errors(tmp_path, text, message):
    with pytest.raises(config.ConfigError, match=message):
        layered(["--config", write(tmp_path, text)], {})


def test_bad_env_is_an_error_and_other_qroute_variables_are_left_alone():
    with pytest.raises(config.ConfigError, match=r"\$QROUTE_EVENT_BUFFER"):
        layered([], {"QROUTE_EVENT_BUFFER": "-1"})
    args, sources, _ = layered([], {"QROUTE_TARGET": "x:1", "QROUTE_NO_EXTENSIONS": "1"})
    assert sources == {}


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(config.ConfigError, match="cannot read"):
        layered(["--config", str(tmp_path / "nope.toml")], {})


def test_config_show_prints_effective_settings_with_sources_and_masks_the_admin_key(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, 'listen = "0.0.0.0:7000"\nsync = "full"\n')
    monkeypatch.setenv("QROUTE_SYNC", "normal")
    monkeypatch.setenv("QROUTE_ADMIN_KEY", "qr_adminid_SuperSecretValue123456")
    assert cli.main(["config", "show", "--config", path, "--event-buffer", "7"]) == 0
    out = capsys.readouterr().out
    assert f'listen = "0.0.0.0:7000"  # file {path}' in out
    assert 'sync = "normal"  # env $QROUTE_SYNC' in out
    assert "event_buffer = 7  # flag" in out
    assert 'data_dir = "./qroute-data"  # default' in out
    assert "SuperSecret" not in out and "qr_adminid_****" in out


def test_cli_reports_a_bad_file_and_exits_2(tmp_path, capsys):
    assert cli.main(["serve", "--config", write(tmp_path, "bogus = 1\n")]) == 2
    assert "unknown setting bogus" in capsys.readouterr().err
