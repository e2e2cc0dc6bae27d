"""End to end with PyKMIP: key pairs and cryptographic services on the real ``twistd -n
kmip`` (the server :class:`tests.test_end_to_end.EndToEndTests` starts, shared)."""

from __future__ import annotations

import os

from kmip.core import enums
from kmip.core.enums import KMIPVersion
from kmip.pie.client import ProxyKmipClient
from twisted.trial.unittest import SynchronousTestCase

from tests import test_end_to_end


class PyKMIPCryptoTests(SynchronousTestCase):
    """PyKMIP's own calls for key pairs, encryption, signatures and MACs work."""

    def client(self) -> ProxyKmipClient:
        shared = test_end_to_end.EndToEndTests
        shared._shared_server()
        server = shared.server
        self.assertTrue(server.alive(), server.log())
        cert, key, ca = server.client_bundle
        config = os.path.join(shared.workdir, "pykmip-crypto.conf")
        with open(config, "w") as out:
            out.write("[client]\n")
        client = ProxyKmipClient(
            hostname="127.0.0.1",
            port=server.port,
            cert=cert,
            key=key,
            ca=ca,
            config_file=config,
            kmip_version=KMIPVersion.KMIP_1_4,
        )
        client.open()
        self.addCleanup(client.close)
        return client

    def test_key_pair_sign_and_verify(self) -> None:
        """A PyKMIP client creates an RSA pair, signs with the private key and verifies
        with the public key; other data does not verify."""
        client = self.client()
        public, private = client.create_key_pair(
            enums.CryptographicAlgorithm.RSA,
            2048,
            public_usage_mask=[enums.CryptographicUsageMask.VERIFY],
            private_usage_mask=[enums.CryptographicUsageMask.SIGN],
        )
        client.activate(public)
        client.activate(private)
        parameters = {
            "padding_method": enums.PaddingMethod.PSS,
            "hashing_algorithm": enums.HashingAlgorithm.SHA_256,
            "cryptographic_algorithm": enums.CryptographicAlgorithm.RSA,
        }
        signature = client.sign(b"the message", uid=private, cryptographic_parameters=parameters)
        self.assertEqual(len(signature), 256)
        valid = client.signature_verify(
            b"the message", signature, uid=public, cryptographic_parameters=parameters
        )
        self.assertEqual(valid, enums.ValidityIndicator.VALID)
        invalid = client.signature_verify(
            b"another message", signature, uid=public, cryptographic_parameters=parameters
        )
        self.assertEqual(invalid, enums.ValidityIndicator.INVALID)
        self.assertEqual(client.get(public).key_format_type, enums.KeyFormatType.PKCS_1)

    def test_encrypt_decrypt_and_mac(self) -> None:
        """AES-CBC with a server-chosen IV round-trips; HMAC-SHA256 gives 32 bytes."""
        client = self.client()
        key = client.create(
            enums.CryptographicAlgorithm.AES,
            256,
            cryptographic_usage_mask=[
                enums.CryptographicUsageMask.ENCRYPT,
                enums.CryptographicUsageMask.DECRYPT,
            ],
        )
        client.activate(key)
        parameters = {
            "block_cipher_mode": enums.BlockCipherMode.CBC,
            "padding_method": enums.PaddingMethod.PKCS5,
            "random_iv": True,
        }
        sealed, iv = client.encrypt(b"attack at dawn", uid=key, cryptographic_parameters=parameters)
        self.assertEqual((len(sealed), len(iv)), (16, 16))
        opened = client.decrypt(
            sealed,
            uid=key,
            cryptographic_parameters={
                "block_cipher_mode": enums.BlockCipherMode.CBC,
                "padding_method": enums.PaddingMethod.PKCS5,
            },
            iv_counter_nonce=iv,
        )
        self.assertEqual(opened, b"attack at dawn")
        mac_key = client.create(
            enums.CryptographicAlgorithm.HMAC_SHA256,
            256,
            cryptographic_usage_mask=[enums.CryptographicUsageMask.MAC_GENERATE],
        )
        client.activate(mac_key)
        uid, mac = client.mac(
            b"data", uid=mac_key, algorithm=enums.CryptographicAlgorithm.HMAC_SHA256
        )
        self.assertEqual((uid, len(mac)), (mac_key, 32))
