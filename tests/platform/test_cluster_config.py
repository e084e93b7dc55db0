"""cluster.yaml keeps the security rules: SSH only, token auth on, dashboard on localhost."""

import pathlib
import re

import yaml

CLUSTER = pathlib.Path(__file__).resolve().parents[2] / "cluster.yaml"


def test_security_group_opens_ssh_only():
    config = yaml.safe_load(CLUSTER.read_text())
    rules = config["provider"]["security_group"]["IpPermissions"]
    assert [(r["FromPort"], r["ToPort"], r["IpProtocol"]) for r in rules] == [(22, 22, "tcp")]


def test_every_node_starts_ray_with_token_auth_and_a_local_dashboard():
    config = yaml.safe_load(CLUSTER.read_text())
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in starts)
    head = [c for c in starts if "--head" in c][0]
    assert "--dashboard-host=127.0.0.1" in head
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_no_credentials_in_the_repository_config():
    text = CLUSTER.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|RAY_AUTH_TOKEN=", text, re.I)
