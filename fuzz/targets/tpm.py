"""TPM 2.0 structures as ``POST /attest`` carries them (engine/tpm): TPMT_PUBLIC,
TPMS_CREATION_DATA, TPMS_ATTEST, TPMT_SIGNATURE and TPML_PCR_SELECTION, and the AK
creation check that reads all four of the first ones together.

The first byte chooses the structure; for the AK creation check the rest holds
the four structures, each after a two-byte big-endian length.
"""

from __future__ import annotations

from engine.tpm import (
    PCRSelectionList,
    TPMSAttest,
    TPMSCreationData,
    TPMTPublic,
    TPMTSignature,
    check_ak_public,
    public_key_from_tpmt,
    verify_ak_creation,
)
from fuzz.harness import attempt, split

AK_CREATION = 5


def _public(data: bytes) -> None:
    public = TPMTPublic.from_bytes(data)
    attempt(public.name)
    attempt(public_key_from_tpmt, public)
    attempt(check_ak_public, public)
    attempt(check_ak_public, public, allow_sha1=True)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, rest = data[0] % 6, data[1:]
    if selector == 0:
        attempt(_public, rest)
    elif selector == 1:
        attempt(TPMSCreationData.from_bytes, rest)
        attempt(TPMSCreationData.from_tpm2b, rest)
    elif selector == 2:
        attempt(TPMSAttest.from_bytes, rest)
        attempt(TPMSAttest.from_tpm2b, rest)
    elif selector == 3:
        attempt(TPMTSignature.from_bytes, rest)
    elif selector == 4:
        attempt(PCRSelectionList.from_bytes, rest)
    else:
        public, creation, attestation, signature = split(rest, 4)
        for allow_sha1 in (False, True):
            attempt(
                verify_ak_creation,
                public,
                creation,
                attestation,
                signature,
                allow_sha1=allow_sha1,
            )
