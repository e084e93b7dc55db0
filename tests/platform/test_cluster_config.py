"""cluster.yaml, checked offline: by Ray 2.60's own cluster-config code, then by this project's rules.

Ray's part is what `ray up` runs on the config before it touches AWS: prepare_config (Ray's
defaults merged in, setup commands merged per node type), validate_config (Ray's JSON schema and
checks), the AWS provider's fill-out of node resources (fed canned instance types instead of
EC2's answer), and the steps of its AWS bootstrap that pick the IAM profile, the security group
and the AMI, run with every AWS client replaced by one that fails: with this file none is needed.
No socket may connect or resolve a name while a test runs.

Our rules: the head takes no trials; GPU workers are spot and scale from zero; the image is Ray's
for the pinned Ray and Python 3.11; every `ray start` uses token authentication and the dashboard
listens on loopback; the security group is the user's and no rule here opens a Ray port; every
pip install pins its versions, lookinside at a commit; no secret is written in the file. Each
rule is a function that lists problems, and the last test shows that each one finds the mistake
it exists for."""

import copy
import pathlib
import re
import shlex
import socket
import tomllib

import pytest
import ray
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from ray.autoscaler._private.aws import config as aws_config
from ray.autoscaler._private.aws import node_provider as aws_node_provider
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster.yaml"
RAY_PORTS = (6379, 8265, 10001)  # GCS, dashboard, Ray Client
PLACEHOLDER = re.compile(r"<[A-Z_]+>")

# What EC2's DescribeInstanceTypes says of the instance types the file names (the fields Ray reads).
INSTANCE_TYPES = [
    {"InstanceType": "m6i.2xlarge", "VCpuInfo": {"DefaultVCpus": 8}, "MemoryInfo": {"SizeInMiB": 32768}},
    *({"InstanceType": name, "VCpuInfo": {"DefaultVCpus": 8}, "MemoryInfo": {"SizeInMiB": 32768},
       "GpuInfo": {"Gpus": [{"Name": gpu, "Manufacturer": "NVIDIA", "Count": 1}]}}
      for name, gpu in (("g5.2xlarge", "A10G"), ("g6.2xlarge", "L4"))),
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the cluster config test touched the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    # The AWS config steps reach EC2 and IAM only through these two.
    monkeypatch.setattr(aws_config, "_resource", refuse)
    monkeypatch.setattr(aws_config, "_client", refuse)


def raw() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def prepared(config: dict | None = None) -> dict:
    """The config as `ray up` has it before the provider's bootstrap: Ray's defaults merged in,
    then Ray's schema and checks."""
    config = prepare_config(copy.deepcopy(raw() if config is None else config))
    validate_config(config)
    return config


def filled_out(config: dict, monkeypatch) -> dict:
    """Ray's AWS fill-out of node resources from instance types (canned, not asked of EC2)."""
    monkeypatch.setattr(aws_node_provider, "list_ec2_instances", lambda region, credentials=None: INSTANCE_TYPES)
    return aws_node_provider.AWSNodeProvider.fillout_available_node_types_resources(config)


def workers(config: dict) -> dict:
    return {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}


def commands(config: dict) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    return [c for k in keys for c in config.get(k, [])]


def segments(command: str) -> list[list[str]]:
    """A shell command's simple commands, each as its words (quotes respected, redirections dropped)."""
    found = []
    for line in command.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words, redirected = [], False
        for token in lexer:
            if token in (";", "&", "&&", "||", "|", "(", ")"):
                found.append(words)
                words = []
            elif set(token) <= set("<>&"):
                redirected = True  # the next word is the redirection's target
            elif redirected:
                redirected = False
            else:
                words.append(token)
        found.append(words)
    return [words for words in found if words]


# --- the rules -----------------------------------------------------------------------------------

def head_problems(config: dict) -> list[str]:
    head = config["available_node_types"][config["head_node_type"]]
    found = []
    if head.get("resources", {}).get("CPU") != 0:
        found.append(f"head resources {head.get('resources')}: trials would run on the head (want CPU 0)")
    if head.get("resources", {}).get("GPU", 0) != 0:
        found.append("head offers GPUs")
    if head.get("max_workers", 0) != 0:
        found.append("the head type may be launched as a worker")
    if "InstanceMarketOptions" in head["node_config"]:
        found.append("the head (the sweep driver) runs on spot")
    return found


def worker_problems(config: dict) -> list[str]:
    found = [] if workers(config) else ["no worker type"]
    for name, node in workers(config).items():
        market = node["node_config"].get("InstanceMarketOptions", {}).get("MarketType")
        if market != "spot":
            found.append(f"{name}: not on spot ({market})")
        if node.get("min_workers") != 0:
            found.append(f"{name}: min_workers {node.get('min_workers')}, not 0")
        if not 0 < node.get("max_workers", 0) <= config["max_workers"]:
            found.append(f"{name}: max_workers {node.get('max_workers')} not in 1..{config['max_workers']}")
        if node.get("resources", {}).get("GPU", 0) < 1:
            found.append(f"{name}: offers no GPU")
    if not config.get("idle_timeout_minutes", 0) > 0:
        found.append("no idle timeout")
    return found


def start_problems(config: dict) -> list[str]:
    """Token authentication on every `ray start`, one head start with a loopback dashboard and
    no CPUs, nothing bound to every interface."""
    found, heads, starts = [], [], 0
    for command in commands(config):
        if "0.0.0.0" in command:
            found.append(f"binds to every interface: {command!r}")
        for words in segments(command):
            at = next((i for i in range(len(words) - 1) if words[i].endswith("ray") and words[i + 1] == "start"), None)
            if at is None:
                continue
            starts += 1
            if "RAY_AUTH_MODE=token" not in words[:at]:
                found.append(f"`ray start` without RAY_AUTH_MODE=token: {command!r}")
            if "--head" in words:
                heads.append(words)
    if len(heads) != 1 or starts < 2:
        found.append(f"want one head `ray start` and worker ones, found {len(heads)} and {starts - len(heads)}")
    for words in heads:
        if "--dashboard-host=127.0.0.1" not in words:
            found.append("the head's dashboard is not on 127.0.0.1")
        if "--num-cpus=0" not in words:
            found.append("the head's `ray start` does not say --num-cpus=0")
    if config.get("file_mounts", {}).get("~/.ray/auth_token") != "~/.ray/auth_token":
        found.append("the user's token file is not mounted at ~/.ray/auth_token")
    return found


def open_ray_ports(rules: list[dict]) -> set[int]:
    """Ray ports that some rule opens to addresses (rules naming only groups stay inside them)."""
    opened = set()
    for rule in rules:
        if not (rule.get("IpRanges") or rule.get("Ipv6Ranges") or rule.get("PrefixListIds")):
            continue
        for port in RAY_PORTS:
            if str(rule.get("IpProtocol")) in ("-1", "all") or (
                    str(rule.get("IpProtocol")).lower() in ("tcp", "6")
                    and rule.get("FromPort", 0) <= port <= rule.get("ToPort", 65535)):
                opened.add(port)
    return opened


def security_group_problems(config: dict) -> list[str]:
    found = []
    opened = open_ray_ports(config["provider"].get("security_group", {}).get("IpPermissions", []))
    if opened:
        found.append(f"the security group opens Ray ports {sorted(opened)}")
    if "security_group" in config["provider"]:
        found.append("provider.security_group: Ray would make the group and open SSH to 0.0.0.0/0 itself")
    groups = {name: node["node_config"].get("SecurityGroupIds") for name, node in
              config["available_node_types"].items()}
    if not all(groups.values()) or len({repr(g) for g in groups.values()}) != 1:
        found.append(f"every node type must name the same security group of the user: {groups}")
    for group in next(iter(groups.values())) or []:
        if not (re.fullmatch(r"sg-[0-9a-f]{8,17}", group) or PLACEHOLDER.fullmatch(group)):
            found.append(f"not a security group id: {group!r}")
    return found


PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9_,.-]+\])?==[0-9][0-9A-Za-z.+!-]*")
LOOKINSIDE = re.compile(r"lookinside(\[[a-z_,]+\])?\s*@\s*git\+https://github\.com/(<OWNER>|[A-Za-z0-9_.-]+)"
                        r"/lookinside(\.git)?@(<REVISION>|[0-9a-f]{40})")
TAKES_VALUE = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-t", "--target"}
UNPINNED_SOURCES = {"-r", "--requirement", "-c", "--constraint", "-e", "--editable"}


def pins(config: dict) -> tuple[dict[str, str], list[str], list[str]]:
    """What the pip installs of every node ask for: {name: version}, the lookinside specs, and
    the problems (a spec without ==, requirement files, editable installs)."""
    pinned, ours, found = {}, [], []
    for command in commands(config):
        for words in segments(command):
            at = next((i for i in range(len(words) - 1) if words[i].endswith("pip") and words[i + 1] == "install"),
                      None)
            if at is None:
                continue
            rest = iter(words[at + 2:])
            for word in rest:
                if word in UNPINNED_SOURCES or word.split("=")[0] in UNPINNED_SOURCES:
                    found.append(f"{word}: installs what this file does not pin")
                elif word in TAKES_VALUE:
                    next(rest, None)
                elif word.startswith("-"):
                    continue
                elif LOOKINSIDE.fullmatch(word):
                    ours.append(word)
                elif PIN.fullmatch(word):
                    name, version = word.split("==")
                    pinned[canonicalize_name(name.split("[")[0])] = version
                else:
                    found.append(f"not pinned with == (nor lookinside at a commit): {word!r} in {command!r}")
    if len(set(ours)) != 1:
        found.append(f"want lookinside installed once at one commit, found {ours}")
    return pinned, ours, found


def project_pin_problems(pinned: dict[str, str]) -> list[str]:
    """Every dependency of lookinside and of its extras (bar dev) is pinned, at a version its specifier
    allows; where the dev extra pins a version (torch), the cluster pins the same one."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = []
    extras = project["optional-dependencies"]
    for spec in project["dependencies"] + [spec for name, specs in extras.items() if name != "dev" for spec in specs]:
        req = Requirement(spec)
        version = pinned.get(canonicalize_name(req.name))
        if version is None:
            found.append(f"{req.name} is not pinned on the cluster")
        elif not req.specifier.contains(version, prereleases=True):
            found.append(f"{req.name}=={version} does not satisfy pyproject's {spec!r}")
    for spec in project["optional-dependencies"]["dev"]:
        req = Requirement(spec)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        version = pinned.get(canonicalize_name(req.name))
        if exact and version is not None and version != exact[0]:
            found.append(f"{req.name}=={version} on the cluster, =={exact[0]} in the dev extra")
    return found


SECRETS = {
    "an AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "an AWS credential setting": re.compile(r"aws_(secret_access_key|session_token|access_key_id)", re.I),
    "a Ray token setting": re.compile(r"RAY_AUTH_TOKEN\s*[=:]"),
    "a Ray token (64 hex digits)": re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}


def secret_problems(text: str) -> list[str]:
    found = [what for what, pattern in SECRETS.items() if pattern.search(text)]
    if "aws_credentials" in ((yaml.safe_load(text) or {}).get("provider") or {}):
        found.append("provider.aws_credentials")
    return found


# --- the file ------------------------------------------------------------------------------------

def test_ray_prepares_and_validates_the_config():
    config = prepared()
    assert config["provider"] == raw()["provider"]
    # Ray's defaults were merged in (validate_config insists on them), and nothing of ours was replaced.
    assert "cluster_synced_files" in config
    assert config["head_setup_commands"] == raw()["setup_commands"] + raw()["head_setup_commands"]
    assert config["worker_setup_commands"] == raw()["setup_commands"] + raw()["worker_setup_commands"]


def test_the_head_takes_no_trials_even_after_ray_fills_out_resources(monkeypatch):
    config = filled_out(prepared(), monkeypatch)
    assert head_problems(config) == []
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0, "GPU": 0}


def test_gpu_workers_are_spot_scale_from_zero_and_time_out(monkeypatch):
    config = filled_out(prepared(), monkeypatch)
    assert worker_problems(config) == []
    for node in workers(config).values():  # Ray's fill-out keeps the file's CPU and GPU counts
        assert {k: node["resources"][k] for k in ("CPU", "GPU")} == {"CPU": 8, "GPU": 1}


def test_the_image_is_rays_for_this_ray_and_python_311_on_an_explicit_ami():
    config = prepared()
    docker = config["docker"]
    for image in (docker["head_image"], docker["worker_image"]):
        assert re.fullmatch(rf"rayproject/ray:{re.escape(ray.__version__)}-py311-(cpu|gpu|cu\d+)", image), image
    assert not docker["worker_image"].endswith("-cpu") and "--gpus all" in docker["worker_run_options"]
    amis = {node["node_config"].get("ImageId") for node in config["available_node_types"].values()}
    assert len(amis) == 1, amis
    ami = amis.pop()
    assert PLACEHOLDER.fullmatch(ami) or re.fullmatch(r"ami-[0-9a-f]{8,17}", ami), ami
    # Ray puts its own default AMI (Deep Learning AMI, Ubuntu 18.04) only where none is set.
    aws_config._check_ami(config)
    assert {node["node_config"]["ImageId"] for node in config["available_node_types"].values()} == {ami}


def test_every_node_has_its_own_instance_profile_and_ray_creates_none():
    config = prepared()
    profiles = {name: node["node_config"].get("IamInstanceProfile") for name, node in
                config["available_node_types"].items()}
    assert all(p and (p.get("Name") or p.get("Arn")) for p in profiles.values()), profiles
    head = profiles.pop(config["head_node_type"])
    assert all(p != head for p in profiles.values())  # workers get S3 only, not the head's EC2 rights
    config["head_node"] = {}
    assert aws_config._configure_iam_role(config) is config  # returned at once: no IAM call
    assert config["head_node"] == {}  # Ray's default role (EC2 and S3 full access) is not attached


def test_the_security_group_is_the_users_and_ray_adds_no_rule():
    config = prepared()
    assert security_group_problems(config) == []
    # With SecurityGroupIds on every node type, Ray's AWS bootstrap leaves groups alone (no EC2 call).
    assert aws_config._configure_security_group(copy.deepcopy(config)) == config


def test_every_ray_start_uses_token_auth_and_the_dashboard_stays_on_loopback():
    assert start_problems(prepared()) == []


def test_every_install_is_pinned_and_lookinside_is_at_a_commit():
    # After prepare_config: Ray's defaults would add an unpinned `pip install boto3` to an empty head setup.
    pinned, ours, found = pins(prepared())
    assert found == []
    assert project_pin_problems(pinned) == []
    assert pinned["torch"] == "2.13.0" and pinned["ray"] == ray.__version__


def test_no_secret_in_the_file():
    assert secret_problems(CLUSTER.read_text()) == []


# --- the rules find what they exist for ----------------------------------------------------------

def _mutated(change) -> dict:
    config = raw()
    change(config)
    return config


def _set(config: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        config = config[key]
    config[last] = value


@pytest.mark.parametrize("rule, change", [
    (head_problems, lambda c: _set(c, "available_node_types.head.resources", {"CPU": 8, "GPU": 0})),
    (worker_problems, lambda c: c["available_node_types"]["gpu_g5"]["node_config"].pop("InstanceMarketOptions")),
    (worker_problems, lambda c: _set(c, "available_node_types.gpu_g6.min_workers", 1)),
    (start_problems, lambda c: _set(c, "head_start_ray_commands",
                                    ["ray start --head --num-cpus=0 --dashboard-host=0.0.0.0"])),
    (start_problems, lambda c: _set(c, "worker_start_ray_commands", ["ray start --address=$RAY_HEAD_IP:6379"])),
    (security_group_problems, lambda c: _set(c, "provider.security_group", {"IpPermissions": [
        {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]})),
    (security_group_problems, lambda c: c["available_node_types"]["gpu_g6"]["node_config"].pop("SecurityGroupIds")),
    (lambda c: pins(c)[2], lambda c: _set(c, "setup_commands", ["pip install -q --upgrade pip torch",
                                                                "pip install -e ~/lookinside"])),
    (lambda c: pins(c)[2], lambda c: c.pop("head_setup_commands")),  # Ray's default: boto3>=1.4.8
])
def test_each_rule_finds_its_mistake(rule, change):
    assert rule(prepare_config(_mutated(change)))


def test_without_its_resources_line_ray_would_give_the_head_its_8_cpus(monkeypatch):
    config = raw()
    del config["available_node_types"]["head"]["resources"]
    filled = filled_out(prepare_config(config), monkeypatch)
    assert filled["available_node_types"]["head"]["resources"] == {"CPU": 8}
    assert head_problems(filled)


def test_secret_rule_finds_keys_and_tokens():
    assert secret_problems("provider: {aws_credentials: {}}\n")
    assert secret_problems("setup_commands: ['export RAY_AUTH_TOKEN=x']\n")
    assert secret_problems(f"# {'0123456789abcdef' * 4}\n")
    assert secret_problems("# AKIAABCDEFGHIJKLMNOP\n")
    assert not secret_problems("# lookinside@0123456789abcdef0123456789abcdef01234567\n")  # a commit is no secret
