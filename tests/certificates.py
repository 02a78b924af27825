"""Certificates for the TLS tests, made on the spot by the JDK's keytool (which the broker's Java
brings) and openssl: the broker's keystore, a client's certificate and key, and the truststore with
which a broker requires that client's certificate."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not on PATH")
    return path


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def broker_keystore(folder: Path, password: str) -> tuple[Path, Path]:
    """A key and self-signed certificate for 127.0.0.1: the broker's PKCS12 keystore, and the
    certificate as PEM for the clients' CA file."""
    keytool = _tool("keytool")
    keystore, cert = folder / "broker.p12", folder / "ca.pem"
    store = ["-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", password]
    key = ["-keyalg", "RSA", "-keysize", "2048", "-validity", "2", "-keypass", password]
    name = ["-dname", "CN=localhost", "-ext", "SAN=ip:127.0.0.1,dns:localhost"]
    _run(keytool, "-genkeypair", "-alias", "broker", *key, *name, *store)
    _run(keytool, "-exportcert", "-rfc", "-alias", "broker", *store, "-file", str(cert))
    return keystore, cert


def client_certificate(
    folder: Path, name: str = "sessionflow", password: str | None = None
) -> tuple[Path, Path]:
    """A client's self-signed certificate (CN=`name`) and its PEM key, encrypted with `password`
    when one is given: the files SESSIONFLOW_KAFKA_SSL_CERTFILE and _KEYFILE name."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    secret = ["-passout", f"pass:{password}"] if password else ["-noenc"]
    _run(
        _tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert), *secret,
    )  # fmt: skip
    return cert, key


def truststore(folder: Path, certs: list[Path], password: str) -> Path:
    """A PKCS12 truststore of `certs`: a broker that requires client certificates takes these."""
    store = folder / "clients.p12"
    for i, cert in enumerate(certs):
        _run(
            _tool("keytool"), "-importcert", "-noprompt", "-alias", f"client-{i}",
            "-file", str(cert), "-keystore", str(store), "-storetype", "PKCS12",
            "-storepass", password,
        )  # fmt: skip
    return store
