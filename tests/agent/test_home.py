"""The agent's start: the configuration copy from a mounted Secret, and where porter-bundle is."""

from __future__ import annotations

import pytest

from porter_bundle.agent.home import AgentSetupError, copy_config, load_porter_config, server_config
from tests.helpers import secret_volume

CONFIG = """\
namespace: team-a
default-storage: pb
storage:
  - name: mongo
    plugin: mongodb
    config: {url: "mongodb://x"}
  - name: pb
    plugin: porter-bundle
    config:
      address: porter-bundle.system.svc:3001
      token: ${env.PB_TOKEN}
      tls: true
"""


def test_the_secret_layout_is_copied_following_links_and_skipping_dot_entries(tmp_path):
    config = secret_volume(tmp_path / "porter-config", {"config.yaml": CONFIG, "ca.pem": "PEM"})
    home = tmp_path / "home"
    said: list[str] = []
    env = {"PORTER_CONFIG": str(config), "PORTER_HOME": str(home)}
    copy_config(env, said.append)
    assert sorted(p.name for p in home.iterdir()) == ["ca.pem", "config.yaml"]
    assert not (home / "config.yaml").is_symlink()
    assert (home / "config.yaml").read_text() == CONFIG
    assert said == [
        f"Loading configuration ca.pem into {home}/ca.pem",
        f"Loading configuration config.yaml into {home}/config.yaml",
    ]
    loaded = load_porter_config(env)
    server = server_config(loaded, {**env, "PB_TOKEN": "t0ken"})
    assert (server.server, server.token, server.tls, server.namespace) == (
        "porter-bundle.system.svc:3001",
        "t0ken",
        True,
        "team-a",
    )


def test_no_config_falls_back_to_the_environment(tmp_path):
    env = {"PORTER_HOME": str(tmp_path), "PORTER_CONFIG": str(tmp_path / "absent")}
    copy_config(env, print)
    server = server_config(
        load_porter_config(env), {"PORTER_BUNDLE_SERVER": "h:1", "PORTER_BUNDLE_TOKEN": "tk"}
    )
    assert (server.server, server.token, server.namespace) == ("h:1", "tk", "")
    with pytest.raises(AgentSetupError, match="no porter-bundle server configured"):
        server_config({}, {})


def test_an_env_reference_that_is_not_set_names_the_variable_not_a_value(tmp_path):
    config = {
        "storage": [
            {
                "name": "x",
                "plugin": "porter-bundle",
                "config": {"address": "a:1", "token": "${env.NOPE}"},
            }
        ]
    }
    with pytest.raises(AgentSetupError, match="environment variable NOPE is not set"):
        server_config(config, {})
