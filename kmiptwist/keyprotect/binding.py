"""A tenant's Key Protect binding: which root key, in which instance, reached how.

A tenant bound to Key Protect has ``root_key_kind`` "keyprotect", ``root_key_id`` the
root key's id, and a ``root_key_binding`` (stored as JSON) with:

``instance_id``
    the Key Protect instance GUID (``Bluemix-Instance``), required;
``endpoint``
    the Key Protect endpoint, e.g. ``https://private.us-south.kms.cloud.ibm.com``;
``token_url``
    the IAM token URL, e.g. ``https://private.iam.cloud.ibm.com/identity/token``;
``api_key_file`` or ``api_key_env``
    where the service ID's API key is read: a file only its owner can read, or an
    environment variable of the server (``api_key`` with ``file:/path`` or
    ``env:NAME`` says the same; it is stored as one of the two);
``ca_bundle``
    a PEM file of the CAs that sign the endpoints' certificates (default: the
    system's);
``key_ring``
    the root key's key ring (sent as ``X-Kms-Key-Ring``).

Each left out comes from the ``[keyprotect]`` section of the configuration
(:class:`KeyProtectSettings`).  An API key itself is never part of a binding.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from attrs import frozen

from kmiptwist.keyprotect.iam import DEFAULT_TOKEN_URL, APIKeySource
from kmiptwist.keyprotect.transport import RetryPolicy

__all__ = [
    "KEYPROTECT",
    "LOCAL",
    "BINDING_FIELDS",
    "DEFAULT_ENDPOINT",
    "KeyProtectSettings",
    "KeyProtectBinding",
    "check_url",
    "make_binding",
    "settings_from",
]

#: ``root_key_kind`` of a tenant bound to a Key Protect root key.
KEYPROTECT = "keyprotect"
#: ``root_key_kind`` of a tenant whose material the local root key wraps.
LOCAL = "local"

DEFAULT_ENDPOINT = "https://us-south.kms.cloud.ibm.com"

BINDING_FIELDS = (
    "instance_id",
    "endpoint",
    "token_url",
    "api_key",
    "api_key_file",
    "api_key_env",
    "ca_bundle",
    "key_ring",
)


@frozen
class KeyProtectSettings:
    """The ``[keyprotect]`` defaults and limits shared by every Key Protect tenant."""

    endpoint: str = DEFAULT_ENDPOINT
    token_url: str = DEFAULT_TOKEN_URL
    api_key: str | None = None
    ca_bundle: str | None = None
    timeout: float = 5.0
    deadline: float = 15.0
    max_retries: int = 4
    backoff: float = 0.2
    max_backoff: float = 3.0
    max_in_flight: int = 128
    verify_on_get: bool = False
    verify_interval: float = 1.0

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy of every Key Protect and IAM call."""
        return RetryPolicy(
            timeout=self.timeout,
            deadline=self.deadline,
            max_retries=self.max_retries,
            backoff=self.backoff,
            max_backoff=self.max_backoff,
        )


def check_url(url: str, what: str) -> str:
    """``url`` without a trailing slash; ValueError unless HTTPS (HTTP only to loopback).

    Plain HTTP would send the API key's token and key material in the clear; it is
    allowed to a loopback address only, for the emulator.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url.rstrip("/")
    if parts.scheme == "http" and host:
        loopback = host == "localhost"
        try:
            loopback = loopback or ipaddress.ip_address(host).is_loopback
        except ValueError:
            pass
        if loopback:
            return url.rstrip("/")
        raise ValueError(f"the {what} {url} must use https (plain http only to loopback)")
    raise ValueError(f"the {what} {url!r} is not an https URL")


@frozen
class KeyProtectBinding:
    """Everything needed to reach one tenant's root key (defaults applied)."""

    root_key_id: str
    instance_id: str
    endpoint: str
    token_url: str
    api_key: APIKeySource
    ca_bundle: str | None = None
    key_ring: str | None = None

    def stored(self) -> dict[str, Any]:
        """The JSON a tenant record keeps (only what is not the root key id)."""
        kind, _, target = self.api_key.reference.partition(":")
        data: dict[str, Any] = {
            "instance_id": self.instance_id,
            "endpoint": self.endpoint,
            "token_url": self.token_url,
            f"api_key_{kind}": target,
        }
        if self.ca_bundle is not None:
            data["ca_bundle"] = self.ca_bundle
        if self.key_ring is not None:
            data["key_ring"] = self.key_ring
        return data


def make_binding(
    root_key_id: str, binding: Mapping[str, Any], settings: KeyProtectSettings
) -> KeyProtectBinding:
    """The binding of ``root_key_id`` with ``binding``'s fields over ``settings``' defaults.

    ValueError names the first field that cannot work (unknown field, instance id not
    a UUID, non-HTTPS URL, an API key given instead of a reference to one).
    """
    unknown = sorted(set(binding) - set(BINDING_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown Key Protect binding field {unknown[0]!r}; the fields are "
            + ", ".join(BINDING_FIELDS)
        )
    if not isinstance(root_key_id, str) or not root_key_id.strip() or "/" in root_key_id:
        raise ValueError(f"{root_key_id!r} is not a Key Protect root key id or alias")
    instance_id = str(binding.get("instance_id") or "")
    try:
        uuid.UUID(instance_id)
    except ValueError:
        raise ValueError(
            f"the Key Protect instance id {instance_id!r} is not a UUID (the instance's GUID)"
        ) from None
    given = [name for name in ("api_key", "api_key_file", "api_key_env") if binding.get(name)]
    if len(given) > 1:
        raise ValueError(f"give one of {', '.join(given)}, not several")
    if binding.get("api_key"):
        # Only ever a reference ("file:/path", "env:NAME"); an API key itself is refused.
        try:
            reference = APIKeySource.parse(str(binding["api_key"])).reference
        except ValueError:
            raise ValueError(
                "api_key must say where the API key is read (file:/path or env:NAME); the API "
                "key itself is never stored"
            ) from None
    elif binding.get("api_key_file"):
        reference = f"file:{binding['api_key_file']}"
    elif binding.get("api_key_env"):
        reference = f"env:{binding['api_key_env']}"
    else:
        reference = settings.api_key or ""
    if not reference:
        raise ValueError(
            "no API key: give the binding api_key_file or api_key_env, or set [keyprotect] "
            "api_key (file:/path or env:NAME)"
        )
    ca_bundle = binding.get("ca_bundle") or settings.ca_bundle
    key_ring = binding.get("key_ring")
    return KeyProtectBinding(
        root_key_id=root_key_id.strip(),
        instance_id=instance_id,
        endpoint=check_url(
            str(binding.get("endpoint") or settings.endpoint), "Key Protect endpoint"
        ),
        token_url=check_url(str(binding.get("token_url") or settings.token_url), "IAM token URL"),
        api_key=APIKeySource.parse(str(reference)),
        ca_bundle=None if not ca_bundle else str(ca_bundle),
        key_ring=None if not key_ring else str(key_ring),
    )


def settings_from(configuration: Any) -> KeyProtectSettings:
    """The Key Protect settings of a :class:`kmiptwist.config.Configuration`.

    ValueError when a default endpoint is not HTTPS (or HTTP to loopback).
    """
    return KeyProtectSettings(
        endpoint=check_url(configuration.keyprotect_endpoint, "[keyprotect] endpoint"),
        token_url=check_url(configuration.keyprotect_token_url, "[keyprotect] token_url"),
        api_key=configuration.keyprotect_api_key,
        ca_bundle=configuration.keyprotect_ca_bundle,
        timeout=configuration.keyprotect_timeout,
        deadline=configuration.keyprotect_deadline,
        max_retries=configuration.keyprotect_max_retries,
        max_in_flight=configuration.keyprotect_max_in_flight,
        verify_on_get=configuration.cache_verify_on_get,
        verify_interval=configuration.cache_verify_interval,
    )
