"""The deployment files (Dockerfile, compose.yaml, deploy/nginx.conf) against the code.

Docker is not needed: the files are parsed, and every variable they set must be
one the gateway reads (``chatgate.settings.Settings``) or one the image it is
given to documents. A renamed setting, a typo in a variable name, extras that
differ from the README's install, or a proxy that drops the WebSocket upgrade
fail here instead of in a deployment that starts with a setting silently ignored.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices

from chatgate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
NGINX = ROOT / "deploy" / "nginx.conf"
README = ROOT / "README.md"

# What each third-party image reads, from its documentation on Docker Hub
# (and the entrypoint scripts of docker-library/postgres and nginxinc/docker-nginx).
IMAGE_VARIABLES: dict[str, frozenset[str]] = {
    "postgres": frozenset(
        {
            "POSTGRES_USER",
            "POSTGRES_PASSWORD",
            "POSTGRES_DB",
            "POSTGRES_USER_FILE",
            "POSTGRES_PASSWORD_FILE",
            "POSTGRES_DB_FILE",
            "POSTGRES_INITDB_ARGS",
            "POSTGRES_INITDB_WALDIR",
            "POSTGRES_HOST_AUTH_METHOD",
            "PGDATA",
        }
    ),
    # The redis image reads no variable: it is configured on the command line.
    "redis": frozenset(),
    "nginx": frozenset(
        {
            "NGINX_ENTRYPOINT_QUIET_LOGS",
            "NGINX_ENTRYPOINT_LOCAL_RESOLVERS",
            "NGINX_ENTRYPOINT_WORKER_PROCESSES_AUTOTUNE",
            "NGINX_ENVSUBST_TEMPLATE_DIR",
            "NGINX_ENVSUBST_TEMPLATE_SUFFIX",
            "NGINX_ENVSUBST_OUTPUT_DIR",
            "NGINX_ENVSUBST_FILTER",
        }
    ),
}

PIP_EXTRAS = re.compile(r"(?:chatgate|\.)\[([A-Za-z0-9_,\- ]+)\]")
README_INSTALL = re.compile(r"pip install ['\"]?chatgate\[([A-Za-z0-9_,\- ]+)\]['\"]?")


def gateway_variables() -> frozenset[str]:
    """Every environment variable ``Settings`` reads, upper-case."""
    names: set[str] = set()
    prefix = Settings.model_config.get("env_prefix", "")
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        else:
            names.add(prefix + field)
    return frozenset(name.upper() for name in names)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_variables() -> dict[str, str]:
    """The names ENV and ARG lines set, with their values ("" for an ARG without one)."""
    variables: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ARG":
            name, _, value = arguments.partition("=")
            variables[name] = value
        elif keyword == "ENV":
            words = shlex.split(arguments)
            if "=" not in words[0]:  # the legacy form, ENV NAME value
                variables[words[0]] = " ".join(words[1:])
                continue
            for word in words:
                name, _, value = word.partition("=")
                variables[name] = value
    return variables


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def environment(service: dict) -> dict[str, str]:
    """A service's ``environment:``, as a map whatever form it is written in."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def built_here(service: dict) -> bool:
    """Whether the service runs the image of this repository's Dockerfile."""
    build = service.get("build")
    if build is None:
        return False
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    return (ROOT / context / dockerfile).resolve() == DOCKERFILE


def gateways() -> dict[str, dict]:
    """The services running ``chatgate serve`` (the image's default command)."""
    return {
        name: service
        for name, service in services().items()
        if built_here(service) and "command" not in service
    }


def image_kind(service: dict) -> str:
    """The key of ``IMAGE_VARIABLES`` for a third-party service's image."""
    repository = service["image"].rsplit("/", 1)[-1].split(":", 1)[0]
    assert repository in IMAGE_VARIABLES, (
        f"image {service['image']!r}: list the variables it reads in IMAGE_VARIABLES"
    )
    return repository


def test_the_settings_yield_the_variable_names_the_docs_use():
    names = gateway_variables()
    for name in ("ENVIRONMENT", "PORT", "CHATGATE_PORT", "K_SERVICE", "CHATGATE_JWT_SECRET"):
        assert name in names
    assert "CHATGATE_ENVIRONMENT" not in names
    assert "CHATGATE_E2E_TESTING" not in names


def test_the_dockerfile_sets_only_variables_the_gateway_reads():
    unknown = set(dockerfile_variables()) - gateway_variables()
    assert not unknown, f"the Dockerfile sets variables chatgate never reads: {sorted(unknown)}"


def test_the_image_listens_everywhere_and_leaves_tier_and_port_to_the_deployment():
    variables = dockerfile_variables()
    assert variables.get("CHATGATE_HOST") == "0.0.0.0"  # noqa: S104 - what the image must do
    # A default tier would let a forgotten ENVIRONMENT pass unnoticed.
    assert "ENVIRONMENT" not in variables
    # CHATGATE_PORT wins over PORT: setting it would ignore Cloud Run's PORT.
    assert "CHATGATE_PORT" not in variables
    assert "PORT" not in variables


def test_the_image_exposes_the_default_port_and_checks_healthz_as_a_non_root_user():
    instructions = dict(dockerfile_instructions())
    assert instructions["EXPOSE"] == str(Settings.model_fields["port"].default)
    assert "/healthz" in instructions["HEALTHCHECK"]
    assert instructions["HEALTHCHECK"].split(" CMD ", 1)[1].startswith('["python"')
    assert instructions["STOPSIGNAL"] == "SIGTERM"
    user = instructions["USER"].split(":")[0]
    assert user not in {"root", "0"}
    assert instructions["CMD"] == '["serve"]'
    assert instructions["ENTRYPOINT"] == '["chatgate"]'


def readme_extras() -> set[str]:
    """The extras of the README's install for a deployment: the one with the PostgreSQL store."""
    installs = [
        {extra.strip() for extra in match.split(",")}
        for match in README_INSTALL.findall(README.read_text())
    ]
    deployment = [extras for extras in installs if "postgres" in extras]
    assert len(deployment) == 1, (
        "README.md must say once how to install chatgate for a deployment, with the line "
        "pip install 'chatgate[postgres,redis]'"
    )
    return deployment[0]


def dockerfile_extras() -> list[set[str]]:
    """The extras of each pip line: the wheels built in one stage, the install in the other."""
    pip_lines = [
        arguments for keyword, arguments in dockerfile_instructions() if "pip " in arguments
    ]
    return [
        {extra.strip() for extra in match.split(",")}
        for line in pip_lines
        for match in PIP_EXTRAS.findall(line)
    ]


def test_the_image_installs_the_extras_of_the_readme():
    extras = dockerfile_extras()
    assert len(extras) == 2
    assert extras[0] == extras[1] == readme_extras()


def test_the_extras_the_image_installs_exist():
    # pip only warns about an extra the package does not define, and the image
    # would then lack the PostgreSQL or Redis client.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    defined = set(project.get("optional-dependencies", {}))
    missing = set().union(*dockerfile_extras()) - defined
    assert not missing, f"pyproject.toml defines no extra {sorted(missing)}"


def test_compose_sets_only_variables_the_services_read():
    allowed_for_gateway = gateway_variables()
    for name, service in services().items():
        allowed = (
            allowed_for_gateway if built_here(service) else IMAGE_VARIABLES[image_kind(service)]
        )
        unknown = set(environment(service)) - allowed
        assert not unknown, f"service {name} sets variables nothing reads: {sorted(unknown)}"


def test_two_gateways_share_store_broker_and_key_with_their_own_ids():
    found = gateways()
    assert len(found) == 2
    envs = [environment(service) for service in found.values()]
    ids = [env["CHATGATE_INSTANCE_ID"] for env in envs]
    assert len(set(ids)) == 2
    assert all(instance_id for instance_id in ids)
    for variable in ("CHATGATE_DATABASE_URL", "CHATGATE_BROKER_URL", "CHATGATE_JWT_SECRET"):
        assert len({env[variable] for env in envs}) == 1, variable
    env = envs[0]
    assert env["ENVIRONMENT"] == "staging"
    assert env["CHATGATE_DATABASE_URL"].startswith("postgresql://")
    assert env["CHATGATE_BROKER_URL"].startswith("redis://")
    # Compose refuses to start without the secret instead of passing an empty one.
    assert re.fullmatch(r"\$\{CHATGATE_JWT_SECRET:\?[^}]+\}", env["CHATGATE_JWT_SECRET"])


def test_every_service_waited_for_has_a_healthcheck():
    all_services = services()
    for name, service in all_services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions"
        for dependency, condition in depends_on.items():
            wanted = condition["condition"]
            assert wanted in {"service_healthy", "service_completed_successfully"}
            if wanted != "service_healthy":
                continue
            target = all_services[dependency]
            has_check = "healthcheck" in target or (
                built_here(target) and "HEALTHCHECK" in dict(dockerfile_instructions())
            )
            assert has_check, f"{name} waits for {dependency}, which has no healthcheck"


def test_the_proxy_waits_for_both_gateways_and_serves_the_nginx_config():
    proxy = next(s for s in services().values() if s.get("image", "").startswith("nginx:"))
    assert set(proxy["depends_on"]) == set(gateways())
    mounts = [volume.split(":") for volume in proxy["volumes"]]
    assert ["./deploy/nginx.conf", "/etc/nginx/conf.d/default.conf", "ro"] in mounts


def nginx_directives() -> list[list[str]]:
    """Every ``name args...;`` of the nginx config, comments dropped."""
    text = "\n".join(line.split("#", 1)[0] for line in NGINX.read_text().splitlines())
    statements = re.split(r"[;{}]", text)
    return [statement.split() for statement in statements if statement.strip()]


def test_nginx_passes_the_websocket_upgrade():
    directives = nginx_directives()
    assert ["proxy_http_version", "1.1"] in directives
    assert ["proxy_set_header", "Upgrade", "$http_upgrade"] in directives
    assert ["proxy_set_header", "Connection", "$connection_upgrade"] in directives
    assert ["map", "$http_upgrade", "$connection_upgrade"] in directives
    assert ["default", "upgrade"] in directives
    # With the port: the gateway compares a browser's Origin with Host.
    assert ["proxy_set_header", "Host", "$http_host"] in directives


@pytest.mark.parametrize("directive", ["proxy_read_timeout", "proxy_send_timeout"])
def test_nginx_keeps_a_socket_far_longer_than_a_heartbeat(directive):
    values = [d[1] for d in nginx_directives() if d[0] == directive]
    assert len(values) == 1
    seconds = int(values[0].removesuffix("s"))
    assert seconds >= 3600


def test_nginx_balances_over_exactly_the_compose_gateways_on_the_image_port():
    servers = {d[1] for d in nginx_directives() if d[0] == "server" and len(d) > 1}
    port = dict(dockerfile_instructions())["EXPOSE"]
    assert servers == {f"{name}:{port}" for name in gateways()}


def test_the_deploy_guide_connects_where_the_proxy_is_published():
    proxy = next(s for s in services().values() if s.get("image", "").startswith("nginx:"))
    host, port, _ = proxy["ports"][0].split(":")
    guide = (ROOT / "docs" / "deploy.md").read_text()
    assert f"ws://{host}:{port}/ws" in guide
    assert "docker compose exec -T gateway-a chatgate token" in guide
