"""nx-27017 with a SCRAM login, as the stand-in for the mongo image (deploy/local-images.sh).

nx-27017 answers every command without authentication; a driver given
``mongodb://user:password@host/?authSource=admin`` needs ``saslStart``/``saslContinue``. This
wraps the handler's command entry point: hello/isMaster advertise SCRAM-SHA-256 and SCRAM-SHA-1
for the user MONGO_INITDB_ROOT_USERNAME, and the SCRAM conversation checks the client's proof
against MONGO_INITDB_ROOT_PASSWORD (a wrong password fails with code 18, as on MongoDB). Clients
that do not log in are still served (a stand-in, not an access control).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
import sys
import threading

from nx_27017 import handler as nx_handler
from nx_27017 import nx_27017 as nx_main

USER = os.environ.get("MONGO_INITDB_ROOT_USERNAME", "")
PASSWORD = os.environ.get("MONGO_INITDB_ROOT_PASSWORD", "")
ITERATIONS = {"SCRAM-SHA-256": 15000, "SCRAM-SHA-1": 10000}
HASHES = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-1": hashlib.sha1}

_conversations: dict[int, dict] = {}
_ids = itertools.count(1)
_lock = threading.Lock()


def _fields(payload: bytes) -> dict[str, str]:
    return dict(part.split("=", 1) for part in payload.decode().split(",") if "=" in part)


def _password_for(mechanism: str) -> bytes:
    if mechanism == "SCRAM-SHA-1":   # MongoDB's SCRAM-SHA-1 uses the MONGODB-CR digest
        return hashlib.md5(f"{USER}:mongo:{PASSWORD}".encode()).hexdigest().encode()
    return PASSWORD.encode()


def _fail(request_id: int, why: str):
    print(f"nx_scram: authentication failed: {why}", file=sys.stderr, flush=True)
    return request_id, {"ok": 0, "errmsg": "Authentication failed.", "code": 18,
                        "codeName": "AuthenticationFailed"}


def _sasl_start(request_id: int, cmd: dict):
    mechanism = cmd.get("mechanism")
    if mechanism not in HASHES:
        return _fail(request_id, f"mechanism {mechanism!r} not offered")
    client_first = bytes(cmd.get("payload", b"")).decode()
    bare = client_first.split(",", 2)[2] if client_first.startswith(("n,", "y,")) else client_first
    fields = _fields(bare.encode())
    if fields.get("n") != USER:
        return _fail(request_id, f"unknown user {fields.get('n')!r}")
    salt = os.urandom(16)
    nonce = fields["r"] + base64.b64encode(os.urandom(18)).decode()
    server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={ITERATIONS[mechanism]}"
    with _lock:
        cid = next(_ids)
        _conversations[cid] = {"mechanism": mechanism, "bare": bare, "server_first": server_first,
                               "salt": salt, "nonce": nonce, "step": 1}
    return request_id, {"ok": 1, "conversationId": cid, "done": False,
                        "payload": server_first.encode()}


def _sasl_continue(request_id: int, cmd: dict):
    cid = cmd.get("conversationId")
    with _lock:
        conv = _conversations.get(cid)
    if conv is None:
        return _fail(request_id, f"no conversation {cid}")
    if conv["step"] == 2:                        # the client's empty last message
        with _lock:
            _conversations.pop(cid, None)
        return request_id, {"ok": 1, "conversationId": cid, "done": True, "payload": b""}
    mechanism = conv["mechanism"]
    digest = HASHES[mechanism]
    client_final = bytes(cmd.get("payload", b"")).decode()
    fields = _fields(client_final.encode())
    without_proof = client_final.rsplit(",p=", 1)[0]
    if fields.get("r") != conv["nonce"]:
        return _fail(request_id, "nonce mismatch")
    salted = hashlib.pbkdf2_hmac(digest().name, _password_for(mechanism), conv["salt"],
                                 ITERATIONS[mechanism])
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    stored_key = digest(client_key).digest()
    auth_message = ",".join((conv["bare"], conv["server_first"], without_proof)).encode()
    client_signature = hmac.new(stored_key, auth_message, digest).digest()
    proof = base64.b64decode(fields.get("p", ""))
    recovered = bytes(a ^ b for a, b in zip(proof, client_signature))
    if len(proof) != len(client_signature) or not hmac.compare_digest(
            digest(recovered).digest(), stored_key):
        with _lock:
            _conversations.pop(cid, None)
        return _fail(request_id, "wrong password")
    server_key = hmac.new(salted, b"Server Key", digest).digest()
    signature = base64.b64encode(hmac.new(server_key, auth_message, digest).digest())
    skip_empty = bool((cmd.get("options") or {}).get("skipEmptyExchange")) or conv.get("skip")
    with _lock:
        if skip_empty:
            _conversations.pop(cid, None)
        else:
            conv["step"] = 2
    return request_id, {"ok": 1, "conversationId": cid, "done": bool(skip_empty),
                        "payload": b"v=" + signature}


def _wrap(original):
    def handle_command(self, msg):
        cmd = None
        for kind, doc in msg.get("sections", ()):
            if kind == "body":
                cmd = doc
        if isinstance(cmd, dict):
            if "saslStart" in cmd:
                request_id, reply = _sasl_start(msg["request_id"], cmd)
                if reply.get("ok") and (cmd.get("options") or {}).get("skipEmptyExchange"):
                    with _lock:
                        _conversations[reply["conversationId"]]["skip"] = True
                return request_id, reply
            if "saslContinue" in cmd:
                return _sasl_continue(msg["request_id"], cmd)
            if "logout" in cmd:
                return msg["request_id"], {"ok": 1}
        request_id, reply = original(self, msg)
        if isinstance(cmd, dict) and isinstance(reply, dict) and USER and any(
                k in cmd for k in ("hello", "Hello", "isMaster", "ismaster")):
            if cmd.get("saslSupportedMechs") == f"admin.{USER}":
                reply["saslSupportedMechs"] = ["SCRAM-SHA-256", "SCRAM-SHA-1"]
        return request_id, reply
    return handle_command


nx_handler.NeoSQLiteHandler.handle_command = _wrap(nx_handler.NeoSQLiteHandler.handle_command)

if __name__ == "__main__":
    sys.argv[1:] = ["--data-dir", "/data/db", "--host", "0.0.0.0", "--port", "27017",
                    "--log-file", "/data/db/nx-27017.log", "--pid-file", "/tmp/nx-27017.pid",
                    *sys.argv[1:]]
    sys.exit(nx_main.main())
