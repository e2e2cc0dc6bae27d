"""The KMIP profiles the test cases belong to, and which ones kmiptwist claims."""

from __future__ import annotations

__all__ = ["PROFILE_TITLES", "CLAIMED_PROFILES", "profile_title"]

#: The profile of each case-file prefix (KMIP Profiles 1.4 and 2.1).
PROFILE_TITLES: dict[str, str] = {
    "BL": "Baseline",
    "SKLC": "Symmetric Key Lifecycle",
    "SKFF": "Symmetric Key Foundry",
    "SASED": "Storage Array with Self-Encrypting Drives",
    "TL": "Tape Library",
    "OMOS": "Opaque Managed Object Store",
    "AKLC": "Asymmetric Key Lifecycle",
    "CS-BC": "Basic Cryptographic",
    "CS-AC": "Advanced Cryptographic",
    "CS-RNG": "RNG Cryptographic",
    "SUITEB_128": "Suite B minLOS_128",
    "SUITEB_192": "Suite B minLOS_192",
    "AX": "AES XTS",
    "QS": "Quantum Safe",
    "PKCS11": "PKCS#11",
    "MSGENC-HTTPS": "HTTPS message encoding (replayed as TTLV; no HTTPS endpoint)",
    "MSGENC-JSON": "JSON message encoding (replayed as TTLV; no JSON endpoint)",
    "MSGENC-XML": "XML message encoding (replayed as TTLV; no XML endpoint)",
}

#: Profiles whose every case (mandatory and optional, each version) kmiptwist passes;
#: tests/test_conformance.py asserts it.  Add a profile here when it passes.
CLAIMED_PROFILES: tuple[str, ...] = (
    "BL",
    "SKLC",
    "SKFF",
    "SASED",
    "TL",
    "OMOS",
    "AKLC",
    "CS-BC",
    "CS-AC",
    "AX",
)


def profile_title(profile: str) -> str:
    """The profile's name for a report ("SKLC" → "Symmetric Key Lifecycle")."""
    return PROFILE_TITLES.get(profile, profile)
