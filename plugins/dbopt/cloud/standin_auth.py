"""Google's token side for the local stand-ins, so real google-auth credential flows run end to end.

It trusts service-account keys it made (RSA, signing only) and answers the three token calls google-auth
makes: the OAuth 2.0 JWT-bearer grant at a key's ``token_uri``, the STS token exchange of a workload identity
federation config (``token_url``) and IAM Credentials ``generateAccessToken`` (impersonation). A request's
``Authorization: Bearer`` is an issued token or a self-signed JWT (what GAPIC clients send for service
accounts); :meth:`principal` says whose it is. Nothing leaves the machine.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from google.auth import exceptions, jwt

TOKEN_PATH = "/token"
STS_PATH = "/v1/token"
_IMPERSONATE = re.compile(r"^/v1/projects/-/serviceAccounts/([^/:]+):generateAccessToken$")
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def authorization(headers: Mapping[str, str]) -> str | None:
    """The Authorization header, whatever its case (google-auth sends it in lower case)."""
    return next((v for k, v in headers.items() if k.lower() == "authorization"), None)


def _error(code: int, message: str, status: str) -> tuple[int, dict[str, Any]]:
    return code, {"error": {"code": code, "message": message, "status": status}}


class TokenAuthority:
    """Keys it trusts, tokens it issued, and a log of every exchange (``exchanges``) for assertions."""

    def __init__(self) -> None:
        self.public_keys: dict[str, str] = {}  # service-account email -> public key PEM
        self.tokens: dict[str, str] = {}  # access token -> principal
        self.grants: dict[str, set[str]] = {}  # impersonated account -> callers allowed to impersonate it
        self.exchanges: list[dict[str, Any]] = []

    def service_account_key(self, email: str, project: str, token_uri: str) -> dict[str, Any]:
        """A new service-account key file's content, trusted by this authority."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        public = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self.public_keys[email] = public
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": secrets.token_hex(8),
            "private_key": private,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "token_uri": token_uri,
        }

    def allow_impersonation(self, caller: str, target: str) -> None:
        """Grant ``caller`` the Service Account Token Creator role on ``target``."""
        self.grants.setdefault(target, set()).add(caller)

    def principal(self, authorization: str | None) -> str | None:
        """Who sent a request: an issued token's owner or a trusted self-signed JWT's issuer; None if neither."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        token = authorization[len("Bearer ") :]
        if token in self.tokens:
            return self.tokens[token]
        return self._signed_by(token)

    def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> tuple[int, dict] | None:
        """Answer a token call, or None when ``path`` is not one."""
        if method != "POST":
            return None
        if path == TOKEN_PATH:
            return self._jwt_grant(parse_qs(raw.decode()))
        if path == STS_PATH:
            return self._token_exchange(parse_qs(raw.decode()))
        if m := _IMPERSONATE.match(path):
            return self._impersonate(m[1], authorization(headers), raw)
        return None

    # -- the three flows ------------------------------------------------------------------------

    def _jwt_grant(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != [_JWT_BEARER]:
            return 400, {"error": "unsupported_grant_type", "error_description": f"got {form.get('grant_type')}"}
        assertion = form.get("assertion", [""])[0]
        issuer = self._signed_by(assertion)
        if issuer is None:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        scope = jwt.decode(assertion, verify=False).get("scope", "")
        return 200, self._issue(issuer, "jwt-bearer", scope=scope)

    def _token_exchange(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != [_TOKEN_EXCHANGE] or not form.get("subject_token"):
            return 400, {"error": "invalid_request", "error_description": "token exchange needs a subject_token"}
        audience = form.get("audience", [""])[0]
        principal = f"principal://{audience.removeprefix('//iam.googleapis.com/')}/subject/{form['subject_token'][0]}"
        body = self._issue(principal, "sts", scope=form.get("scope", [""])[0])
        return 200, {**body, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}

    def _impersonate(self, target: str, authorization: str | None, raw: bytes) -> tuple[int, dict[str, Any]]:
        caller = self.principal(authorization)
        if caller is None:
            return _error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        request = json.loads(raw or b"{}")
        chain = [caller, *(request.get("delegates") or []), target]
        for holder, account in itertools.pairwise(chain):
            if holder not in self.grants.get(account, set()):
                return _error(
                    403, f"Permission 'iam.serviceAccounts.getAccessToken' denied on {account}", "PERMISSION_DENIED"
                )
        body = self._issue(target, "impersonation", scope=" ".join(request.get("scope") or []), chain=chain)
        expire = datetime.fromtimestamp(time.time() + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 200, {"accessToken": body["access_token"], "expireTime": expire}

    def _issue(self, principal: str, flow: str, **detail: Any) -> dict[str, Any]:
        token = "ya29.standin-" + secrets.token_urlsafe(16)
        self.tokens[token] = principal
        self.exchanges.append({"flow": flow, "principal": principal, **detail})
        return {"access_token": token, "token_type": "Bearer", "expires_in": 3600}

    def _signed_by(self, token: str) -> str | None:
        try:
            issuer = jwt.decode(token, verify=False).get("iss")
            if issuer not in self.public_keys:
                return None
            jwt.decode(token, certs=self.public_keys[issuer])
        except (ValueError, exceptions.GoogleAuthError):
            return None
        return issuer
