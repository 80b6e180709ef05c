"""How VaultTransit logs in: a token, AppRole, or Kubernetes service-account login.

Secrets never travel in pickles: ``settings()`` leaves them out, and a receiving process reads
them from its own environment (or files) again, as Vault's own tools do.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, ClassVar

import hvac

from sealed_results.errors import ConfigError, KeyProviderError
from sealed_results.pickling import Rebuildable

__all__ = [
    "DEFAULT_K8S_JWT_PATH",
    "AppRoleAuth",
    "KubernetesAuth",
    "TokenAuth",
    "VaultAuth",
    "build_auth",
]

DEFAULT_K8S_JWT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _lifetime(response: dict[str, Any]) -> tuple[str, float | None]:
    auth = response["auth"]
    ttl = float(auth.get("lease_duration") or 0)
    return auth["client_token"], (ttl if ttl > 0 else None)


class VaultAuth(Rebuildable, abc.ABC):
    """How VaultTransit gets a token. Secrets never travel in pickles (``settings()`` leaves
    them out): a receiving process reads them from its own environment (or files) again."""

    name: ClassVar[str]

    @abc.abstractmethod
    def login(self, client: hvac.Client) -> tuple[str, float | None]:
        """A token and its lifetime in seconds (None: no known expiry)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class TokenAuth(VaultAuth):
    """A token given here, else ``VAULT_TOKEN``, else ``~/.vault-token`` (as the vault CLI).

    A token is re-read after a 403, so one refreshed by Vault Agent in the environment or the
    token file is picked up; renewing a static token is its owner's job."""

    name = "token"

    def __init__(self, token: str | None = None) -> None:
        self._token = token

    def login(self, client: hvac.Client) -> tuple[str, float | None]:
        token = self._token or os.environ.get("VAULT_TOKEN")
        if not token:
            path = Path.home() / ".vault-token"
            token = path.read_text().strip() if path.is_file() else None
        if not token:
            raise ConfigError("no Vault token: set VAULT_TOKEN or pass token=")
        return token, None

    def settings(self) -> dict[str, Any]:
        return {}


class AppRoleAuth(VaultAuth):
    """AppRole login: ``role_id``/``secret_id`` given here, else ``VAULT_ROLE_ID`` and
    ``VAULT_SECRET_ID``. Neither travels in pickles: the role id is half of the credential
    (the config check treats it as a secret too), so a copy reads both from its environment."""

    name = "approle"

    def __init__(
        self, role_id: str | None = None, secret_id: str | None = None, *, mount: str = "approle"
    ) -> None:
        self._role_id, self._secret_id, self._mount = role_id, secret_id, mount

    def login(self, client: hvac.Client) -> tuple[str, float | None]:
        role_id = self._role_id or os.environ.get("VAULT_ROLE_ID")
        secret_id = self._secret_id or os.environ.get("VAULT_SECRET_ID") or None
        if not role_id:
            raise ConfigError("AppRole login needs a role id: set VAULT_ROLE_ID or pass role_id=")
        return _lifetime(
            client.auth.approle.login(
                role_id=role_id, secret_id=secret_id, use_token=False, mount_point=self._mount
            )
        )

    def settings(self) -> dict[str, Any]:
        return {"mount": self._mount}


class KubernetesAuth(VaultAuth):
    """Kubernetes login with a Vault role and the pod's service-account JWT, read from
    ``jwt_path`` at every login (the kubelet rotates that file)."""

    name = "kubernetes"

    def __init__(
        self, role: str, *, jwt_path: str = DEFAULT_K8S_JWT_PATH, mount: str = "kubernetes"
    ) -> None:
        if not role or not isinstance(role, str):
            raise ConfigError("Kubernetes login needs role=")
        if not jwt_path:
            raise ConfigError("Kubernetes login needs a jwt_path")
        self._role, self._jwt_path, self._mount = role, str(jwt_path), mount

    def settings(self) -> dict[str, Any]:
        return {"role": self._role, "jwt_path": self._jwt_path, "mount": self._mount}

    def login(self, client: hvac.Client) -> tuple[str, float | None]:
        try:
            jwt = Path(self._jwt_path).read_text().strip()
        except OSError:
            raise KeyProviderError("the Kubernetes service-account token is not readable") from None
        if not jwt:
            raise KeyProviderError("the Kubernetes service-account token file is empty")
        return _lifetime(
            client.auth.kubernetes.login(
                role=self._role, jwt=jwt, use_token=False, mount_point=self._mount
            )
        )


def build_auth(
    auth: str | VaultAuth,
    token: str | None,
    role_id: str | None,
    secret_id: str | None,
    role: str | None,
    jwt_path: str,
    auth_mount: str | None,
) -> VaultAuth:
    if isinstance(auth, VaultAuth):
        if token or role_id or secret_id or role or auth_mount:
            raise ConfigError("auth is an object: give credentials to it, not to VaultTransit")
        return auth
    options = {"token": token, "role_id": role_id, "secret_id": secret_id, "role": role}
    applies = {"token": ("token",), "approle": ("role_id", "secret_id"), "kubernetes": ("role",)}
    misplaced = [
        name for name, value in options.items() if value and name not in applies.get(auth, ())
    ]
    if misplaced:
        raise ConfigError(f"{misplaced[0]}= does not apply to this auth method")
    if auth == "token":
        return TokenAuth(token)
    if auth == "approle":
        return AppRoleAuth(role_id, secret_id, mount=auth_mount or "approle")
    if auth == "kubernetes":
        return KubernetesAuth(role or "", jwt_path=jwt_path, mount=auth_mount or "kubernetes")
    raise ConfigError('auth must be "token", "approle", "kubernetes" or a VaultAuth object')
