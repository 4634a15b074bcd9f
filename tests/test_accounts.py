"""Each account's httpx client: its own, but verifying upstreams with one TLS context for all."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dashboard import accounts
from dashboard.accounts import Account


@pytest.fixture
def fresh_clients(monkeypatch):
    clients: dict = {}
    monkeypatch.setattr(accounts, "_clients", clients)
    monkeypatch.setattr(accounts, "_connections", {})
    monkeypatch.setattr(accounts, "_tls_context", None)
    yield clients
    for client in clients.values():
        client.close()


def forty_accounts(base_url: str = "") -> list[Account]:
    made = []
    for n in range(40):
        provider = "anthropic" if n % 2 else "openai"
        url = base_url or ("https://api.anthropic.com" if provider == "anthropic" else "https://api.openai.com/v1")
        made.append(Account(name=f"team{n}", provider=provider, base_url=url, api_key=f"sk-test-key-{n}"))
    return made


def tls_context_of(client: httpx.Client) -> ssl.SSLContext:
    return client._transport._pool._ssl_context


def test_forty_accounts_have_forty_clients_and_one_tls_context(fresh_clients):
    clients = [accounts.client_for(account) for account in forty_accounts()]

    assert len({id(client) for client in clients}) == 40
    contexts = {id(tls_context_of(client)) for client in clients}
    assert len(contexts) == 1
    context = tls_context_of(clients[0])
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # a CA bundle is loaded


def test_each_client_still_carries_only_its_own_key(fresh_clients):
    first, second = (accounts.client_for(account) for account in forty_accounts()[:2])

    headers = [dict(client.build_request("GET", "/batches").headers) for client in (first, second)]
    assert "sk-test-key-0" in str(headers[0]) and "sk-test-key-1" not in str(headers[0])
    assert "sk-test-key-1" in str(headers[1]) and "sk-test-key-0" not in str(headers[1])


@pytest.fixture
def untrusted_tls_server(tmp_path):
    """A loopback TLS server whose certificate (for 127.0.0.1) no CA signed; its address."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    handshakes: list[str] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                try:
                    with server_context.wrap_socket(connection, server_side=True):
                        handshakes.append("completed")
                except (ssl.SSLError, OSError):
                    handshakes.append("refused by the client")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://localhost:{listener.getsockname()[1]}", handshakes
    listener.close()
    thread.join(timeout=5)


def test_the_shared_context_still_refuses_an_upstream_whose_certificate_no_ca_signed(
    fresh_clients, untrusted_tls_server
):
    base_url, handshakes = untrusted_tls_server
    client = accounts.client_for(forty_accounts(base_url)[0])

    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get("/batches")
    assert "completed" not in handshakes
