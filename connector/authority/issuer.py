"""What the authority signs: members' credentials and the revocation status list."""

from __future__ import annotations

from typing import Any

from connector.authority.registry import Participant, Registry
from connector.credentials import status_list
from connector.credentials.jwt_vc import MEMBERSHIP, ROLE, STATUS_LIST, sign_credential
from connector.identity.keys import KeyPair

STATUS_PATH = "/authority/v1/status/revocation"
# short, so a verifier never trusts a stale list for long; it is re-signed on every request
STATUS_LIST_SECONDS = 3600


class Issuer:
    def __init__(
        self, did: str, keys: KeyPair, base_url: str, registry: Registry, valid_seconds: float
    ) -> None:
        self.did = did
        self._keys = keys
        self.status_url = base_url.rstrip("/") + STATUS_PATH
        self._registry = registry
        self._valid = valid_seconds

    def credentials_for(self, p: Participant) -> list[dict[str, Any]]:
        """A MembershipCredential, and a RoleCredential when the participant has roles."""
        status = {
            "id": f"{self.status_url}#{p.status_index}",
            "type": "BitstringStatusListEntry",
            "statusPurpose": "revocation",
            "statusListIndex": str(p.status_index),
            "statusListCredential": self.status_url,
        }
        valid = p.valid_seconds or self._valid
        membership = {
            "name": p.name,
            "organisation": p.organisation,
            "memberSince": p.onboarded_at,
            "dataspace": self.did,
        }
        if p.region:
            membership["region"] = p.region
        issued: list[tuple[str, dict[str, Any]]] = [(MEMBERSHIP, membership)]
        if p.roles:
            issued.append((ROLE, {"role": p.roles}))
        return [
            {
                "credentialType": kind,
                "format": "vc1_0_jwt",
                "payload": sign_credential(
                    self._keys, self.did, p.id, kind, claims, valid_seconds=valid, status=status
                ),
            }
            for kind, claims in issued
        ]

    def status_list_credential(self) -> str:
        bits = status_list.with_bits(self._registry.revoked_indexes())
        return sign_credential(
            self._keys,
            self.did,
            f"{self.status_url}#list",
            STATUS_LIST,
            {
                "type": "BitstringStatusList",
                "statusPurpose": "revocation",
                "encodedList": status_list.encode(bits),
            },
            valid_seconds=STATUS_LIST_SECONDS,
            credential_id=self.status_url,
        )
