"""Dask's own diagnostics: the dashboard link, the task stream's split of each stage, the
performance reports (--dask-report), and a tls:// scheduler with its security configuration
(a real `dask scheduler` and `dask worker` on loopback, certificates made here)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from processes import stop_groups

from harness.cli import main
from harness.errors import SpecError
from harness.runtime import client_settings, free_port
from harness.runtime.diagnostics import summarize
from harness.workload.spec import load_security, load_spec, parse_spec, with_overrides

DASK = str(Path(sys.executable).with_name("dask"))
START_TIMEOUT_S = 60  # a scheduler or worker imports distributed: ~2 s idle, far more on a loaded machine


@pytest.fixture(autouse=True)
def _keep_signal_handlers(keep_signal_handlers):
    """main() installs signal handlers for the CLI process (conftest.keep_signal_handlers)."""


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------- the task stream, pure


def test_summarize_sums_each_action_of_every_record():
    records = [
        {"key": "a", "startstops": ({"action": "transfer", "start": 1.0, "stop": 1.25},
                                    {"action": "compute", "start": 1.5, "stop": 3.0})},
        {"key": "b", "startstops": ({"action": "deserialize", "start": 0.0, "stop": 0.125},
                                    {"action": "compute", "start": 2.0, "stop": 2.5},
                                    {"action": "disk-read", "start": 4.0, "stop": 4.5})},
    ]
    seen = summarize(records)
    assert seen.tasks == 2
    assert seen.compute_s == pytest.approx(1.5 + 0.5)
    assert seen.transfer_s == pytest.approx(0.25)
    assert seen.deserialize_s == pytest.approx(0.125)
    assert seen.other_s == pytest.approx(0.5)
    assert summarize([]).tasks == 0 and summarize([]).compute_s == 0.0


# ---------------------------------------------------------------- security configuration, pure


def _pem_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"ca_file": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    for path in files.values():
        path.write_text("not checked before connecting\n")
    return files


def test_security_table_paths_resolve_from_the_workload_file_and_missing_files_are_named(tmp_path, make_toml):
    _pem_files(tmp_path / "tls")
    toml = make_toml("sec").replace(
        "[cluster]\n", '[cluster]\naddress = "tls://127.0.0.1:1"\n'
                       'security = {ca_file = "tls/ca.pem", cert = "tls/cert.pem", key = "tls/key.pem"}\n')
    path = tmp_path / "sec.toml"
    path.write_text(toml)
    spec = load_spec(path)
    assert spec.cluster.security.ca_file == str(tmp_path / "tls" / "ca.pem")

    path.write_text(toml.replace("tls/key.pem", "tls/nokey.pem"))
    with pytest.raises(SpecError, match=r"sec\.toml: \[cluster\] security\.key: found 'tls/nokey\.pem' \(no such file"):
        load_spec(path)
    path.write_text(toml.replace(', key = "tls/key.pem"', ""))
    with pytest.raises(SpecError, match=r"\[cluster\] security\.key: missing \(a required key\), expected the path"):
        load_spec(path)


def test_dask_security_file_is_checked_like_the_table(tmp_path, make_toml):
    files = _pem_files(tmp_path / "tls")
    sec = tmp_path / "tls" / "security.toml"
    sec.write_text('ca_file = "ca.pem"\ncert = "cert.pem"\nkey = "key.pem"\n')
    security = load_security(sec)
    assert security.cert == str(files["cert"])
    spec = with_overrides(parse_spec(make_toml("sec")), address="tls://127.0.0.1:1", security=security)
    assert spec.cluster.security == security

    sec.write_text('ca_file = "ca.pem"\ncert = "cert.pem"\nkey = "key.pem"\ncrt = "x"\n')
    with pytest.raises(SpecError, match=r"--dask-security .*security\.toml: \[top level\] crt: unknown key"):
        load_security(sec)
    sec.write_text('ca_file = "gone.pem"\ncert = "cert.pem"\nkey = "key.pem"\n')
    with pytest.raises(SpecError, match=r"--dask-security .*security\.toml: ca_file: found 'gone\.pem' \(no such file"):
        load_security(sec)


def test_tls_address_without_security_and_security_without_tls_are_exit_2(tmp_path, make_toml, capsys):
    path = tmp_path / "w.toml"
    path.write_text(make_toml("tls"))
    out = tmp_path / "results"
    code, _, err = _cli(["run", str(path), "--out", str(out), "--dask-address", "tls://127.0.0.1:1"], capsys)
    assert code == 2 and "a tls:// scheduler needs a TLS configuration" in err and "--dask-security" in err
    _pem_files(tmp_path / "tls")
    sec = tmp_path / "tls" / "security.toml"
    sec.write_text('ca_file = "ca.pem"\ncert = "cert.pem"\nkey = "key.pem"\n')
    code, _, err = _cli(["run", str(path), "--out", str(out), "--dask-security", str(sec)], capsys)
    assert code == 2 and "is not tls://" in err
    assert not out.exists()


# ---------------------------------------------------------------- a real run


@pytest.mark.cluster
def test_dask_report_task_stream_and_dashboard_on_a_real_run(runtime, tmp_path, make_toml, capsys):
    """A sleep workload (its compute is waiting, so the items' own timing and Dask's agree
    closely), two repeats, --dask-report: one performance report per strategy, linked from
    both reports; the task stream's columns per run; the dashboard printed and recorded."""
    path = tmp_path / "w.toml"
    path.write_text(make_toml("dask-diag", count=40, kind="sleep", mean_ms=5.0,
                              strategies=("raw_dask:5", "static:5")))
    code, out, err = _cli(["run", str(path), "--out", str(tmp_path / "results"), "--repeats", "2",
                           "--dask-address", runtime.scheduler_address, "--dask-report"], capsys)
    assert code == 0, err[-3000:]
    folder = Path(out.rstrip("\n").splitlines()[-1])
    env = json.loads((folder / "env.json").read_text())
    assert env["dask_report"] is True
    assert env["runtime"]["dashboard"] == runtime.dashboard
    assert runtime.dashboard.startswith("http://127.0.0.1:") and runtime.dashboard.endswith("/status")
    assert f"Dask dashboard: {runtime.dashboard}" in err

    files = {r["strategy"]: r["file"] for r in env["dask_reports"]}
    assert files == {"raw_dask:5": "dask-report-raw_dask-5.html", "static:5": "dask-report-static-5.html"}
    assert {r["repeat"] for r in env["dask_reports"]} == {0}
    html = (folder / "report.html").read_text()
    md = (folder / "report.md").read_text()
    for strategy, name in files.items():
        assert "<html" in (folder / name).read_text()[:2000].lower()
        assert f'<a href="{name}">{strategy}</a>' in html
        assert f"[{strategy}]({name})" in md
    assert "## What Dask saw" in md and "<h2>What Dask saw</h2>" in html

    runs = pd.read_csv(folder / "runs.csv")
    assert (runs["dask_tasks"] == runs["tasks"]).all()  # every task of each stage, none of another's
    assert (runs["dask_transfer_s"] >= 0).all() and (runs["dask_deserialize_s"] >= 0).all()
    raw = runs[runs["strategy"] == "raw_dask:5"]
    # raw Dask runs the items and nothing else: its Dask compute is the items' own (each item
    # times its own sleep) plus the batch loop, a small share and a few ms per task at most.
    assert (raw["dask_compute_s"] >= raw["compute_s"] * 0.98).all()
    assert (raw["dask_compute_s"] - raw["compute_s"] <= 0.25 * raw["compute_s"] + 0.01 * raw["tasks"]).all()
    prefect = runs[runs["strategy"] == "static:5"]
    assert (prefect["dask_compute_s"] > prefect["compute_s"]).all()  # Prefect's task engine runs in the task


# ---------------------------------------------------------------- a tls:// scheduler


def _certificates(folder: Path) -> dict[str, Path]:
    """A self-signed CA and one certificate it signed for 127.0.0.1 (server and client use)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "harness test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    files = {"ca_file": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    files["ca_file"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return files


@contextlib.contextmanager
def _tls_cluster(tmp_path: Path, files: dict[str, Path], worker_env: dict[str, str]):
    """`dask scheduler` and one `dask worker` speaking only TLS on loopback; yields the address."""
    tls = ["--tls-ca-file", str(files["ca_file"]), "--tls-cert", str(files["cert"]), "--tls-key", str(files["key"])]
    address = f"tls://127.0.0.1:{free_port()}"
    procs = []

    def start(name: str, cmd: list[str], env: dict[str, str]) -> None:
        with open(tmp_path / f"{name}.log", "wb") as log:
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True))

    try:
        start("scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                            "--protocol", "tls", "--dashboard-address", "127.0.0.1:0", *tls], os.environ.copy())
        start("worker", [DASK, "worker", address, "--nthreads", "1", "--name", "w0", "--host", "127.0.0.1",
                         "--no-dashboard", *tls], worker_env)
        import distributed
        from distributed.security import Security

        security = Security(tls_ca_file=str(files["ca_file"]), tls_client_cert=str(files["cert"]),
                            tls_client_key=str(files["key"]), require_encryption=True)
        with distributed.Client(address, security=security, timeout=START_TIMEOUT_S, set_as_default=False) as c:
            c.wait_for_workers(1, timeout=START_TIMEOUT_S)
        yield address
    finally:
        stop_groups(procs)


@pytest.mark.cluster
def test_runs_on_a_tls_scheduler_with_its_security_and_is_refused_without_it(runtime, tmp_path, make_toml, capsys):
    files = _certificates(tmp_path / "tls")
    sec = tmp_path / "tls" / "security.toml"
    sec.write_text('ca_file = "ca.pem"\ncert = "cert.pem"\nkey = "key.pem"\n')
    path = tmp_path / "w.toml"
    path.write_text(make_toml("tls-run", count=20, strategies=("raw_dask:5", "static:5")))
    out = tmp_path / "results"
    worker_env = {**os.environ, **client_settings(runtime.api_url)}
    with _tls_cluster(tmp_path, files, worker_env) as address:
        code, stdout, err = _cli(["run", str(path), "--out", str(out), "--repeats", "1",
                                  "--dask-address", address, "--dask-security", str(sec)], capsys)
        assert code == 0, err[-3000:]
        folder = Path(stdout.rstrip("\n").splitlines()[-1])
        env = json.loads((folder / "env.json").read_text())["runtime"]
        assert env["scheduler_address"] == address and env["tls"] is True
        assert all(w["address"].startswith("tls://") for w in env["workers"])
        runs = pd.read_csv(folder / "runs.csv", dtype={"checksum": str})
        assert set(runs["strategy"]) == {"raw_dask:5", "static:5"} and runs["checksum"].nunique() == 1

        code, _, err = _cli(["run", str(path), "--out", str(tmp_path / "refused"), "--dask-address", address], capsys)
        assert code == 2 and "needs a TLS configuration" in err
        assert not (tmp_path / "refused").exists()
