"""Where and how every rtsig NATS connection logs in: servers, credentials and TLS, read once.

The ingest's own subscriber (:mod:`rtsig.natsproto`) and the nats-py connections of the workers,
the web and the tools all take their servers, credentials and TLS context from here, so the
methods a deployment uses — user/password or token in ``NATS_URL`` (percent-decoded), an nkey
seed file (``NATS_NKEY_SEED``), a ``.creds`` file with a user JWT and seed (``NATS_CREDS``), TLS
with a private CA or a client certificate (``NATS_TLS_CA``, ``NATS_TLS_CERT``/``NATS_TLS_KEY``)
— behave the same on every connection. Signing the server's nonce is the ``nkeys`` package's job.
"""

from __future__ import annotations

import base64
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nkeys

DEFAULT_PORT = 4222
_CREDS_BLOCK = re.compile(r"-{3,}BEGIN ([A-Z ]+)-{3,}\s*\n(.+?)\n\s*-{3,}END \1-{3,}", re.S)


class CredentialsError(ValueError):
    """A credentials or seed file that cannot be used (the message says why)."""


@dataclass(frozen=True)
class Server:
    """One NATS server of the pool: configured in ``NATS_URL`` or learnt from a cluster's INFO."""

    host: str
    port: int = DEFAULT_PORT
    tls: bool = False
    """``tls://`` in the URL: the connection must be upgraded to TLS after the server's INFO."""
    discovered: bool = False

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class NatsAuth:
    """The servers and the login every connection uses."""

    servers: tuple[Server, ...]
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkey_seed: bytes | None = field(default=None, repr=False)
    user_jwt: str | None = field(default=None, repr=False)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def from_settings(cls, settings) -> NatsAuth:
        """From ``NATS_URL``, ``NATS_CREDS``, ``NATS_NKEY_SEED`` and the ``NATS_TLS_*`` files."""
        return cls.build(settings.nats_url, creds=settings.nats_creds,
                         nkey_seed_file=settings.nats_nkey_seed, tls_ca=settings.nats_tls_ca,
                         tls_cert=settings.nats_tls_cert, tls_key=settings.nats_tls_key)

    @classmethod
    def build(cls, url_list: str, *, creds: Path | None = None, nkey_seed_file: Path | None = None,
              tls_ca: Path | None = None, tls_cert: Path | None = None,
              tls_key: Path | None = None) -> NatsAuth:
        servers, user, password, token = parse_urls(url_list)
        seed, jwt = None, None
        if creds is not None:
            jwt, seed = read_creds(Path(creds))
        elif nkey_seed_file is not None:
            seed = read_seed(Path(nkey_seed_file))
        return cls(servers=servers, user=user, password=password, token=token, nkey_seed=seed,
                   user_jwt=jwt, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)

    @property
    def wants_tls(self) -> bool:
        """TLS files were given: every connection is upgraded, whatever the URL says."""
        return self.tls_ca is not None or self.tls_cert is not None

    def connect_options(self, nonce: str | None) -> dict:
        """The login fields of the ``CONNECT`` line (the nonce comes from the server's INFO)."""
        options: dict = {}
        if self.user is not None:
            options["user"], options["pass"] = self.user, self.password or ""
        if self.token is not None:
            options["auth_token"] = self.token
        if self.nkey_seed is not None:
            kp = nkeys.from_seed(bytearray(self.nkey_seed))
            # the public key is sent with a JWT too: ignored by operator-mode servers, it lets a
            # server that lists the key as an nkey user authenticate the same signature
            options["nkey"] = kp.public_key.decode()
            if nonce:
                options["sig"] = base64.urlsafe_b64encode(kp.sign(nonce.encode())).rstrip(b"=").decode()
            kp.wipe()
        if self.user_jwt is not None:
            options["jwt"] = self.user_jwt
        return options

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the server against ``NATS_TLS_CA`` (else the system CAs); client cert if given."""
        ctx = ssl.create_default_context(cafile=str(self.tls_ca) if self.tls_ca else None)
        if self.tls_cert is not None:
            ctx.load_cert_chain(str(self.tls_cert), str(self.tls_key) if self.tls_key else None)
        return ctx

    def nats_py_options(self) -> dict:
        """The same login for a nats-py ``connect()`` (its URL parser does not percent-decode)."""
        scheme = "tls" if any(s.tls for s in self.servers) else "nats"
        options: dict = {"servers": [f"{scheme}://{s.address}" for s in self.servers]}
        if self.user is not None:
            options["user"], options["password"] = self.user, self.password or ""
        if self.token is not None:
            options["token"] = self.token
        if self.nkey_seed is not None and self.user_jwt is None:
            options["nkeys_seed_str"] = self.nkey_seed.decode()
        if self.user_jwt is not None:
            options["signature_cb"] = lambda nonce: self.connect_options(nonce)["sig"].encode()
            options["user_jwt_cb"] = lambda: self.user_jwt.encode()
        if self.wants_tls or scheme == "tls":
            options["tls"] = self.ssl_context()
        return options


def parse_urls(url_list: str) -> tuple[tuple[Server, ...], str | None, str | None, str | None]:
    """``(servers, user, password, token)`` of a comma-separated ``NATS_URL``.

    User and password are percent-decoded (``p%40ss`` is ``p@ss``), as in any URL; a user part
    without a password is a token. The first server that names credentials gives them to all.
    """
    servers: list[Server] = []
    user = password = token = None
    for raw in url_list.split(","):
        u = urlsplit(raw.strip())
        servers.append(Server(u.hostname or "localhost", u.port or DEFAULT_PORT, tls=u.scheme == "tls"))
        if user is None and token is None and u.username:
            if u.password is not None:
                user, password = unquote(u.username), unquote(u.password)
            else:
                token = unquote(u.username)
    return tuple(servers), user, password, token


def read_seed(path: Path) -> bytes:
    """An nkey seed file (``SU…``), checked so that a bad one stops start-up, not every login."""
    try:
        seed = path.read_bytes().strip()
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror}") from None
    _check_seed(seed, path)
    return seed


def read_creds(path: Path) -> tuple[str, bytes]:
    """``(user JWT, seed)`` of a ``.creds`` file as ``nsc`` writes it."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"cannot read {path}: {exc}") from None
    blocks = {name.strip(): body.strip() for name, body in _CREDS_BLOCK.findall(text)}
    jwt, seed = blocks.get("NATS USER JWT"), blocks.get("USER NKEY SEED")
    if not jwt or not seed:
        raise CredentialsError(f"{path} has no NATS USER JWT and USER NKEY SEED blocks")
    _check_seed(seed.encode(), path)
    return jwt, seed.encode()


def _check_seed(seed: bytes, path: Path) -> None:
    try:
        nkeys.from_seed(bytearray(seed)).wipe()
    except Exception:  # noqa: BLE001 - nkeys raises several types for a bad seed
        raise CredentialsError(f"{path} does not hold a valid nkey seed") from None
