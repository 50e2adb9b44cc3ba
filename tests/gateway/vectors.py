"""PROTOCOL.md's test vectors, copied as text from its "Test vectors" section."""

from __future__ import annotations

from dataclasses import dataclass

MASTER_KEY = bytes(range(32))
TERMINAL = "KIOSK-0001"
CLIENT_NONCE = "00112233445566778899aabbccddeeff"
SERVER_NONCE = "ffeeddccbbaa99887766554433221100"
SESSION_ID = "a1b2c3d4"
SESSION_KEY = bytes.fromhex("f5bc36e6959237af89caa79d02c3fabc846fccef61af0a0ecdb720fd00d3c8f8")


@dataclass(frozen=True)
class Vector:
    name: str
    header: bytes
    body: bytes
    mac: str
    key: bytes
    length: int | None  # the length field, where the vector states it

    @property
    def wire(self) -> bytes:
        return (
            (64 + len(self.body) + 32).to_bytes(4, "big")
            + self.header
            + self.body
            + bytes.fromhex(self.mac)
        )


SIGN_ON_REQUEST = Vector(
    "sign_on_request",
    b"TS01KIOSK-0001      0000000000010001Q100000176411520000000000000",
    b'{"client_nonce":"00112233445566778899aabbccddeeff","software_version":"1.0.0",'
    b'"last_serial":0}',
    "112bc27e1533a29c2aac6bab9d72edc66b32148758637fb85f3f9cf700dc6cd0",
    MASTER_KEY,
    190,
)
SIGN_ON_RESPONSE = Vector(
    "sign_on_response",
    b"TS01KIOSK-0001      0000000000010001R1000001764115200050a1b2c3d4",
    b'{"session_id":"a1b2c3d4","server_nonce":"ffeeddccbbaa99887766554433221100",'
    b'"keepalive_s":30,"server_time_ms":1764115200050,"last_serial":0}',
    "37f74bd4c3103bdb7ff6160819ca09c551dc2dde053c9a3b7e8fe568016ae199",
    MASTER_KEY,
    235,
)
KEEPALIVE_REQUEST = Vector(
    "keepalive_request",
    b"TS01KIOSK-0001      0000000000020003Q1000001764115201000a1b2c3d4",
    b"{}",
    "a41755e070ccb74db5240a57dbb6d8f13c81347a05acd90d02512fade1b4b120",
    SESSION_KEY,
    None,
)
ERROR_RESPONSE = Vector(
    "error_response",
    b"TS01KIOSK-0001      0000000000030003R1100061764115205000a1b2c3d4",
    '{"error":{"code":"10006","message":"timestamp outside the window",'
    '"message_zh":"时间戳超出允许范围","details":{"server_time_ms":1764115205000}}}'.encode(),
    "a06ef0bb1ab5d5dbb4c01899b772cc50a33a001f1e07de5b6d7b9b1c0f95d01c",
    SESSION_KEY,
    249,
)
UTF8_RESPONSE = Vector(
    "utf8_response",
    b"TS01KIOSK-0001      0000000000041015R1000001764115206000a1b2c3d4",
    bytes.fromhex("7b22637573746f6d65725f6e616d65223a22e5bca02a222c2270617961626c65223a747275657d"),
    "54761e3d5923253dee760812323ad502db4442b9d8381eecaf6066d03aa0c93d",
    SESSION_KEY,
    135,
)
ALL = (SIGN_ON_REQUEST, SIGN_ON_RESPONSE, KEEPALIVE_REQUEST, ERROR_RESPONSE, UTF8_RESPONSE)
