"""The team server's accounts, permissions and TLS, against one real `make server HOST=0.0.0.0`
(its own PostgreSQL, HTTPS with the certificate it made) shared by the file's tests, with the
accounts `make user` made: alice and bob (editors), rita (reader). Connections go to 127.0.0.1."""

import base64
import json
import shutil
import ssl
import stat
import time
import types
import urllib.error
import urllib.request

import psutil
import pytest
from mlflow import MlflowClient

from postgres import folder_postgres_can_reach, postgres_binaries  # noqa: F401 - fixture
from projects import BIN, PROJECT, environment, free_port, run, train_command  # noqa: F401
from team_server.accounts import admin, read_settings, write_settings
from team_server.postgres import ServerError
from team_server.tls import check_given, make_certificate
from test_server import listening_sockets

CERT_VARIABLE = "MLFLOW_TRACKING_SERVER_CERT_PATH"
USERS = {"alice": "editor", "bob": "editor", "rita": "reader"}


def server(project, *args: str, check: bool = True):
    return run(project, str(BIN / "python"), "-m", "team_server.server", *args,
               env=environment(PYTHONPATH="src"), check=check, timeout=180)


def exported(output: str) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1) for line in output.splitlines()
                if line.startswith("export "))


@pytest.fixture(scope="module")
def team(postgres_binaries):  # noqa: F811 - the fixture imported above
    """The server, its accounts: .url (https://127.0.0.1:port), .cert, .state, .started (its
    first start's output), .passwords {account: password} (the admin's too)."""
    folder = folder_postgres_can_reach()
    project = folder / "project"
    shutil.copytree(PROJECT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "params.yaml", project / "params.yaml")  # the datasets the server makes experiments for
    shutil.copy2(PROJECT / "params.yaml", project / "params.yaml")  # which experiments make promote opens
    port, postgres_port = free_port(), free_port()
    try:
        started = server(project, "start", "--host", "0.0.0.0", "--port", str(port),
                         "--postgres-port", str(postgres_port))
        passwords = {exported(started.stdout)["MLFLOW_TRACKING_USERNAME"]:
                     exported(started.stdout)["MLFLOW_TRACKING_PASSWORD"]}
        for name, role in USERS.items():
            made = server(project, "user", name, role)
            assert exported(made.stdout)["MLFLOW_TRACKING_USERNAME"] == name
            passwords[name] = exported(made.stdout)["MLFLOW_TRACKING_PASSWORD"]
        state = project / ".mlflow-server"
        yield types.SimpleNamespace(url=f"https://127.0.0.1:{port}", port=port, postgres_port=postgres_port,
                                    cert=state / "tls" / "cert.pem", state=state, project=project,
                                    started=started.stdout, passwords=passwords)
    finally:
        server(project, "stop", check=False)
        shutil.rmtree(folder)


def ask(team, path: str, user: str | None = None, password: str | None = None, method: str = "GET",
        body: dict | None = None, headers: dict | None = None, trust: bool = True) -> tuple[int, bytes]:
    """(status, body) of a request to the server, as `user` (with their password unless given)."""
    request = urllib.request.Request(f"{team.url}{path}", method=method, headers=headers or {},
                                     data=json.dumps(body).encode() if body is not None else None)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if user:
        login = f"{user}:{password or team.passwords[user]}".encode()
        request.add_header("Authorization", f"Basic {base64.b64encode(login).decode()}")
    context = ssl.create_default_context(cafile=team.cert if trust else None)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def client_env(team, user: str | None, **extra) -> dict:
    settings = {"MLFLOW_TRACKING_URI": team.url, CERT_VARIABLE: str(team.cert)}
    if user:
        settings |= {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": team.passwords[user]}
    return {k: v for k, v in environment(PYTHONPATH="src", **settings | extra).items() if v is not None}


SEARCH = "/api/2.0/mlflow/experiments/search?max_results=10"


@pytest.mark.slow
def test_the_admin_password_is_generated_kept_private_and_no_secret_is_readable_by_others(team):
    admin_password = team.passwords["admin"]
    assert f"admin_password = {admin_password}" in (team.state / "auth.ini").read_text()
    assert ask(team, SEARCH, "admin")[0] == 200
    assert ask(team, SEARCH, "admin", "password1234")[0] == 401  # MLflow's old default is not live
    secrets = [*team.passwords.values(), (team.state / "tls" / "key.pem").read_text().splitlines()[1]]
    secrets += [line.split(":")[4] for line in (team.state / "pgpass").read_text().splitlines()]
    for private in ("auth.ini", "pgpass", "tls/key.pem"):
        assert stat.S_IMODE((team.state / private).stat().st_mode) == 0o600, private
    for path in team.state.rglob("*"):
        if path.is_file() and path.stat().st_mode & stat.S_IROTH:
            text = path.read_bytes().decode(errors="replace")
            assert not [s for s in secrets if s in text], f"{path} holds a secret and others may read it"


@pytest.mark.slow
def test_the_api_answers_401_without_or_with_a_wrong_password_403_to_a_reader_writing(team):
    assert ask(team, SEARCH)[0] == 401
    assert ask(team, SEARCH, "alice", "not-her-password")[0] == 401
    status, body = ask(team, SEARCH, "rita")
    assert status == 200 and "synthetic" in body.decode()
    experiment = json.loads(ask(team, "/api/2.0/mlflow/experiments/get-by-name?experiment_name="
                                      "synthetic", "rita")[1])["experiment"]["experiment_id"]
    assert ask(team, "/api/2.0/mlflow/runs/create", "rita", method="POST",
               body={"experiment_id": experiment})[0] == 403
    assert ask(team, "/api/2.0/mlflow/runs/create", "bob", method="POST",
               body={"experiment_id": experiment})[0] == 200


@pytest.mark.slow
def test_the_security_middleware_refuses_a_foreign_host_and_a_foreign_origin(team):
    assert ask(team, SEARCH, "admin", headers={"Host": "evil.example.com"}) == (
        403, b"Invalid Host header - possible DNS rebinding attack detected")
    assert ask(team, SEARCH, "admin", headers={"Host": f"127.0.0.1:{team.port}"})[0] == 200
    create = {"name": "from-elsewhere"}
    assert ask(team, "/api/2.0/mlflow/experiments/create", "admin", method="POST", body=create,
               headers={"Origin": "https://evil.example.com"}) == (403, b"Cross-origin request blocked")


@pytest.mark.slow
def test_https_only_with_the_servers_certificate_on_every_address_postgresql_on_loopback(team):
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        ask(team, SEARCH, "admin", trust=False)
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to the TLS port
        urllib.request.urlopen(f"http://127.0.0.1:{team.port}/health", timeout=10)
    family = [psutil.Process(int((team.state / "mlflow.pid").read_text()))]
    family += family[0].children(recursive=True)
    postmaster = psutil.Process(int((team.state / "postgres/postmaster.pid").read_text().split()[0]))
    assert listening_sockets(family) == {("0.0.0.0", team.port)}
    assert listening_sockets([postmaster]) == {("127.0.0.1", team.postgres_port)}
    assert "From other machines: MLFLOW_TRACKING_URI=https://" in team.started
    assert f"export {CERT_VARIABLE}={team.cert}" in team.started


@pytest.mark.slow
def test_a_client_without_the_certificate_or_with_a_wrong_password_fails_in_one_line(team):
    promote = [str(BIN / "python"), "-m", "tracking.registry"]
    result = run(team.project, *promote, env=client_env(team, "alice", **{CERT_VARIABLE: None}), check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: MLflow tracking server {team.url}: its TLS certificate is not trusted ({CERT_VARIABLE} is "
        f"not set): set {CERT_VARIABLE} to the server's certificate (.mlflow-server/tls/cert.pem on its host)"]
    result = run(team.project, *promote, env=client_env(team, "alice", MLFLOW_TRACKING_PASSWORD="guess"),
                 check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: MLflow tracking server {team.url}: it refused the account (401: no or a wrong "
        "MLFLOW_TRACKING_USERNAME or MLFLOW_TRACKING_PASSWORD; the server's admin makes accounts with `make user`)"]


@pytest.mark.slow
def test_an_editor_records_as_themself_a_reader_is_refused_at_once_promote_needs_manage(team, project_copy,
                                                                                       monkeypatch):
    alice = run(project_copy, "dvc", "repro", "-f", "train@linear", env=client_env(team, "alice"))
    for key, value in client_env(team, "admin").items():
        if key.startswith("MLFLOW_"):
            monkeypatch.setenv(key, value)
    client = MlflowClient(team.url)
    experiment = client.get_experiment_by_name("synthetic").experiment_id
    [recorded] = client.search_runs([experiment], "tags.model = 'linear'")
    [version] = client.search_model_versions(f"run_id = '{recorded.info.run_id}'")
    assert recorded.info.status == "FINISHED" and recorded.info.user_id == "alice", alice.stdout
    assert version.name == "synthetic-linear"

    # Artifacts go through the server, under the same accounts.
    [logged] = [f for f in client.list_artifacts(recorded.info.run_id, "evaluation") if not f.is_dir][:1]
    artifact = (f"/api/2.0/mlflow-artifacts/artifacts/{recorded.info.artifact_uri.removeprefix('mlflow-artifacts:/')}"
                f"/{logged.path}")
    assert ask(team, artifact)[0] == 401
    status, body = ask(team, artifact, "rita")
    assert status == 200 and body == (project_copy / "metrics/linear" / logged.path).read_bytes()

    # A reader's stage stops before any work, naming the permission, and so does one without any
    # account, naming the settings: no run, no output.
    outputs = [project_copy / p for p in ("models/linear.pt", "metrics/linear.json", "metrics/linear/history.json")]
    runs_before = {r.info.run_id: r.info.status for r in client.search_runs([experiment])}
    kept = {p: p.read_bytes() for p in outputs}
    refusals = {
        "rita": f"error: MLflow tracking server {team.url}: account 'rita' holds READ on experiment "
                "'synthetic'; recording runs needs EDIT (ask the server's admin)",
        None: f"error: MLflow tracking server {team.url}: it refused the account (401: no or a wrong "
              "MLFLOW_TRACKING_USERNAME or MLFLOW_TRACKING_PASSWORD; the server's admin makes accounts with "
              "`make user`)"}
    for user, refusal in refusals.items():
        started = time.monotonic()
        refused = run(project_copy, "dvc", "repro", "-f", "train@linear", env=client_env(team, user), check=False)
        assert time.monotonic() - started < 60
        assert refused.returncode != 0
        assert [line for line in refused.stderr.splitlines() if line.startswith("error:")] == [refusal], user
        assert "Traceback" not in refused.stderr
        assert not [line for line in refused.stdout.splitlines() if line.startswith("epoch ")], "it trained"
    assert {r.info.run_id: r.info.status for r in client.search_runs([experiment])} == runs_before
    assert {p: p.read_bytes() for p in outputs if p.exists()} == kept, "the outputs must stay the last good run's"

    # Moving `champion` needs MANAGE on the registered model: alice made it, bob may only edit it.
    promote = [str(BIN / "python"), "-m", "tracking.registry"]
    bob = run(project_copy, *promote, env=client_env(team, "bob"), check=False)
    assert bob.returncode == 1 and bob.stderr.splitlines() == [
        f"error: MLflow tracking server {team.url}: account 'bob' holds EDIT on registered model "
        "'synthetic-linear'; moving its champion alias needs MANAGE (ask the server's admin)"]
    alias = "/api/2.0/mlflow/registered-models/alias"
    champion = {"name": "synthetic-linear", "alias": "champion", "version": "1"}
    assert ask(team, alias, "bob", method="POST", body=champion)[0] == 403  # the server itself refuses
    assert ask(team, alias.replace("/api/", "/ajax-api/"), "bob", method="POST", body=champion)[0] == 403
    assert client.get_registered_model("synthetic-linear").aliases == {}
    promoted = run(project_copy, *promote, env=client_env(team, "alice"))
    assert promoted.stdout.startswith("synthetic-linear: champion -> version 1")
    assert ask(team, f"{alias}?name=synthetic-linear&alias=champion", "bob", method="DELETE")[0] == 403
    assert client.get_registered_model("synthetic-linear").aliases == {"champion": "1"}
    assert ask(team, alias, "admin", method="POST", body=champion)[0] == 200
    assert run(project_copy, *promote, env=client_env(team, "admin")).returncode == 0


def test_the_admin_password_and_form_key_are_made_once_and_kept_through_restarts(tmp_path):
    settings = tmp_path / "auth.ini"
    assert write_settings(settings, 5433) is True
    first = settings.read_text()
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    assert write_settings(settings, 5434) is False  # another PostgreSQL port, the same secrets
    assert admin(settings) == ("admin", read_settings(settings)["mlflow"]["admin_password"])
    assert settings.read_text() == first.replace(":5433/", ":5434/")


def test_a_given_certificate_is_refused_in_one_line_if_its_key_is_readable_by_others_or_not_its_own(tmp_path):
    certificate, key = make_certificate(tmp_path / "one")
    assert check_given((certificate, key)) == (certificate, key)
    key.chmod(0o644)
    with pytest.raises(ServerError, match=f"^KEY={key}: others may read it .*`chmod 600 {key}` first$"):
        check_given((certificate, key))
    key.chmod(0o600)
    _, other_key = make_certificate(tmp_path / "other")
    with pytest.raises(ServerError, match="do not make a certificate and its key"):
        check_given((certificate, other_key))


@pytest.mark.slow
def test_only_a_manager_renames_or_deletes_a_registered_model_and_readers_create_none(team):
    """An editor could rename the champion's model away and re-create its name (then managing it),
    a reader could create a model's name before its first run (then managing it): the server refuses
    both, and leaves editors what the stages need (registering new models and versions)."""
    models = "/api/2.0/mlflow/registered-models"
    assert ask(team, f"{models}/create", "admin", method="POST", body={"name": "steered"})[0] == 200
    assert ask(team, f"{models}/rename", "bob", method="POST", body={"name": "steered", "new_name": "away"})[0] == 403
    assert ask(team, f"{models}/delete", "bob", method="DELETE", body={"name": "steered"})[0] == 403
    assert ask(team, f"{models}/delete?name=steered", "bob", method="DELETE")[0] == 403
    assert ask(team, f"{models}/create", "rita", method="POST", body={"name": "claimed"})[0] == 403
    status, body = ask(team, f"{models}/get?name=steered", "rita")
    assert status == 200 and json.loads(body)["registered_model"]["name"] == "steered"  # still there

    assert ask(team, f"{models}/create", "bob", method="POST", body={"name": "bobs"})[0] == 200
    assert ask(team, f"{models}/rename", "bob", method="POST", body={"name": "bobs", "new_name": "bobs2"})[0] == 200
    assert ask(team, f"{models}/rename", "admin", method="POST", body={"name": "steered", "new_name": "kept"})[0] == 200
    assert ask(team, f"{models}/delete", "admin", method="DELETE", body={"name": "kept"})[0] == 200


@pytest.mark.slow
def test_a_version_an_editor_tags_with_forged_metrics_is_not_crowned(team):
    """An editor may tag a model version (EDIT), so its headline tags are a claim: `make promote`
    crowns only a version whose run recorded what it claims, and names each one it passed over."""
    api = "/api/2.0/mlflow"
    status, body = ask(team, f"{api}/experiments/create", "admin", method="POST", body={"name": "forgery"})
    experiment = json.loads(body)["experiment_id"]
    assert ask(team, f"{api}/registered-models/create", "admin", method="POST", body={"name": "forged"})[0] == 200
    for loss in (0.1, 0.9):  # versions 1 and 2
        run_id = json.loads(ask(team, f"{api}/runs/create", "admin", method="POST",
                                body={"experiment_id": experiment})[1])["run"]["info"]["run_id"]
        assert ask(team, f"{api}/runs/log-metric", "admin", method="POST",
                   body={"run_id": run_id, "key": "test_loss", "value": loss, "timestamp": 0, "step": 0})[0] == 200
        created = ask(team, f"{api}/model-versions/create", "admin", method="POST", body={
            "name": "forged", "source": f"runs:/{run_id}/model", "run_id": run_id,
            "tags": [{"key": "test_loss", "value": str(loss)}]})
        assert created[0] == 200, created
    forged = {"name": "forged", "version": "2", "key": "test_loss", "value": "0.0001"}
    assert ask(team, f"{api}/model-versions/set-tag", "bob", method="POST", body=forged)[0] == 200  # EDIT may
    promote = [str(BIN / "python"), "-m", "tracking.registry", "--model", "forged"]
    promoted = run(team.project, *promote, env=client_env(team, "admin"))
    assert promoted.stdout.splitlines() == [  # version 1 has no model to score again (the editor test crowns one)
        "forged: version 2 not crowned: it claims test_loss 0.0001, its run recorded 0.9000",
        "forged: version 1 not crowned: it names no data digest",
        "forged: no version's claims are borne out by its run and its model; nothing promoted"], promoted.stdout
