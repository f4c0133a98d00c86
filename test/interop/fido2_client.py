#!/usr/bin/python3
"""python-fido2 (0.9.1) interop client for authd's CTAPHID Unix socket.

Run with the Debian interpreter, which has python3-fido2:

    /usr/bin/python3 fido2_client.py SOCKET PHASE [options]
    /usr/bin/python3 fido2_client.py SOCKET --phase PHASE [options]

Every check prints one line, "PASS <phase>: <check>" or
"FAIL <phase>: <check>: <detail>", and the last line is
"RESULT <phase> passed=N failed=M". The exit status is 0 only if every check
passed (1 = a check failed, 2 = usage error).

The socket carries raw 64-byte CTAPHID reports in both directions (no report
ID byte); every connection behaves like another process opening the same HID
device. Phases are small so that the Go test (interop_test.go), which owns the
daemon process, can order them around restarts:

  info        getInfo contents, CTAPHID INIT/PING, two connections at once
              (--expect-pin set|unset)
  malformed   invalid CBOR, wrong types, missing parameters, unknown
              commands and subcommands
  selection   authenticatorSelection (0x0B)
  seed        one discoverable + one non-discoverable credential (--state)
  mc-ga       makeCredential/getAssertion scenario (optionally with
              --pin/--protocol, then every operation uses a PIN token)
  persist     credentials from --state still work after a restart
  pin-policy  setPIN policy checks before a PIN is set (--protocol)
  set-pin     setPIN (--protocol, --pin)
  pin         PIN token, permissions, retries, changePIN (--protocol, --pin)
  credman     credential management incl. the 0x41 preview alias
  block       3 wrong PINs -> PIN_AUTH_BLOCKED (--protocol, --pin)
  blocked     still PIN_AUTH_BLOCKED (e.g. after a daemon restart)
              (--pin, --expect-retries)
  reset       authenticatorReset succeeds and wipes everything (--state)
  reset-late  authenticatorReset refused with NOT_ALLOWED (> 10 s after start)
  presence    for a daemon started with --presence command:SCRIPT that
              denies rp "deny.example"
  all         info, malformed, selection, mc-ga, pin-policy, set-pin, pin and
              credman for both protocols (one daemon lifetime, no restarts)

CTAP 2.1 extensions, large blobs and authenticatorConfig (ext_test.go).
With --pin, operations that can use UV get a fresh PIN token; phases that
compare UV and non-UV behaviour do both:

  ext-info          getInfo 2.1 members (--expect-pin, --expect-always-uv,
                    --expect-min-pin, --expect-force) and
                    remainingDiscoverableCredentials accounting
  ext-hmac          hmac-secret (HmacSecretExtension, Fido2Client PRF path):
                    outputs stable per credential+salt, different with/without
                    UV, getNextAssertion, hmac-secret-mc, every error path
                    (--protocol, optional --pin, --state for ext-hmac-persist)
  ext-hmac-persist  the --state outputs are unchanged (after a restart)
  ext-credprotect   levels 1-3: allowList, discoverable, excludeList, credMgmt,
                    invalid levels (--protocol, --pin)
  ext-credblob      credBlob in MC/GA (CredBlobExtension, Fido2Client)
  ext-largeblob     largeBlobKey + authenticatorLargeBlobs (LargeBlobs class and
                    raw fragments: offsets, lengths, hash, lbw, 8192 bytes);
                    --fresh: the array was never written; --state: key + data
                    for fido2_sockdev largeblob-get
  ext-config-nopin  authenticatorConfig before a PIN exists (--protocol)
  ext-config        authenticatorConfig with a 6-character --pin: auth errors,
                    toggleAlwaysUv, setMinPINLength, forcePINChange; ends with
                    the PIN changed to --new-pin (optionally --leave-always-uv)
  ext-minpin        minPinLength extension vs minPinLengthRPIDs
  ext-errors        outputs subset of inputs, unknown extensions, no CTAP 2.2
                    response keys, CBOR type errors
  ext-after-reset   after authenticatorReset: config and large blobs are back
                    to their defaults (--rp: an RP that was in
                    minPinLengthRPIDs)
"""

import argparse
import hashlib
import json
import os
import socket
import struct
import sys
import time
import traceback

from fido2 import cbor
from fido2.attestation import NoneAttestation, PackedAttestation
from fido2.attestation.base import AttestationType
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.client import Fido2Client
from fido2.ctap2 import (
    AssertionResponse,
    AttestationObject,
    AuthenticatorData,
    ClientPin,
    Config,
    CredentialManagement,
    Ctap2,
    Info,
    LargeBlobs,
    PinProtocolV1,
    PinProtocolV2,
)
from fido2.ctap2.base import args as ctap_args
from fido2.ctap2.extensions import (
    CredBlobExtension,
    CredProtectExtension,
    HmacSecretExtension,
    LargeBlobKeyExtension,
    MinPinLengthExtension,
)
from fido2.hid import CTAPHID, CAPABILITY, CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

REPORT_SIZE = 64
IO_TIMEOUT = float(os.environ.get("AUTHD_INTEROP_TIMEOUT", "30"))

ES256 = {"type": "public-key", "alg": -7}
EDDSA = {"type": "public-key", "alg": -8}
RS256 = {"type": "public-key", "alg": -257}
ES384 = {"type": "public-key", "alg": -35}

PERM_MC = ClientPin.PERMISSION.MAKE_CREDENTIAL
PERM_GA = ClientPin.PERMISSION.GET_ASSERTION
PERM_CM = ClientPin.PERMISSION.CREDENTIAL_MGMT

ERR = CtapError.ERR
FLAG_UP, FLAG_UV, FLAG_AT, FLAG_ED = 0x01, 0x04, 0x40, 0x80

# Raw CTAP2 command bytes.
CMD_MC, CMD_GA, CMD_INFO, CMD_PIN, CMD_RESET = 0x01, 0x02, 0x04, 0x06, 0x07
CMD_GNA, CMD_CM, CMD_SELECTION, CMD_CM_PRE = 0x08, 0x0A, 0x0B, 0x41


# --------------------------------------------------------------------------
# Transport


class UnixSocketConnection(CtapHidConnection):
    """CtapHidConnection over authd's Unix stream socket.

    python-fido2's CtapHidDevice hands write_packet exactly report_size_out
    (64) bytes *without* a report ID (only its Linux hidraw backend prepends
    0x00), and expects read_packet to return one whole 64-byte report.
    """

    def __init__(self, path, timeout=IO_TIMEOUT):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)

    def read_packet(self):
        buf = b""
        while len(buf) < REPORT_SIZE:
            chunk = self.sock.recv(REPORT_SIZE - len(buf))
            if not chunk:
                raise OSError("daemon closed the connection")
            buf += chunk
        return buf

    def write_packet(self, data):
        data = bytes(data)
        if len(data) != REPORT_SIZE:
            raise ValueError("CTAPHID report must be 64 bytes, got %d" % len(data))
        self.sock.sendall(data)

    def close(self):
        self.sock.close()


def open_device(path):
    desc = HidDescriptor(path, 0, 0, REPORT_SIZE, REPORT_SIZE)
    return CtapHidDevice(desc, UnixSocketConnection(path))


class PreviewCtap2(Ctap2):
    """Ctap2 that always sends credential management as the 0x41 prototype."""

    def credential_mgmt(
        self, sub_cmd, sub_cmd_params=None, pin_uv_protocol=None, pin_uv_param=None
    ):
        return self.send_cbor(
            CMD_CM_PRE,
            ctap_args(sub_cmd, sub_cmd_params, pin_uv_protocol, pin_uv_param),
        )


# --------------------------------------------------------------------------
# Reporting


class Failed(Exception):
    """Aborts the current phase after a fatal check failed."""


class Checker(object):
    def __init__(self, phase):
        self.phase = phase
        self.passed = 0
        self.failed = 0

    def ok(self, name, detail=None):
        self.passed += 1
        line = "PASS %s: %s" % (self.phase, name)
        if detail:
            line += " (%s)" % detail
        print(line, flush=True)

    def fail(self, name, detail=""):
        self.failed += 1
        print("FAIL %s: %s: %s" % (self.phase, name, detail), flush=True)

    def check(self, name, cond, detail=""):
        if cond:
            self.ok(name)
        else:
            self.fail(name, detail)
        return bool(cond)

    def require(self, name, cond, detail=""):
        if not self.check(name, cond, detail):
            raise Failed(name)

    def eq(self, name, got, want):
        return self.check(name, got == want, "got %r, want %r" % (got, want))

    def expect_err(self, name, code, fn, *a, **kw):
        """fn must raise CtapError(code)."""
        try:
            fn(*a, **kw)
        except CtapError as e:
            if e.code == code:
                self.ok(name, "0x%02X" % code)
                return True
            self.fail(name, "want 0x%02X %s, got %s" % (code, _err_name(code), e))
            return False
        except Failed:
            raise
        except Exception as e:  # noqa: BLE001 - report anything else
            self.fail(name, "want 0x%02X %s, got exception %r" % (code, _err_name(code), e))
            return False
        self.fail(name, "want 0x%02X %s, got success" % (code, _err_name(code)))
        return False

    def expect_status(self, name, code, status):
        if status == code:
            self.ok(name, "0x%02X" % code)
            return True
        self.fail(name, "want status 0x%02X %s, got 0x%02X %s"
                  % (code, _err_name(code), status, _err_name(status)))
        return False


def _err_name(code):
    try:
        return ERR(code).name
    except ValueError:
        return "?"


def sha256(data):
    return hashlib.sha256(data).digest()


def new_cdh():
    return os.urandom(32)


def desc(cred_id):
    return {"type": "public-key", "id": cred_id}


def user(tag, uid=None):
    return {
        "id": uid if uid is not None else sha256(tag.encode())[:16],
        "name": tag,
        "displayName": tag.upper(),
    }


# --------------------------------------------------------------------------
# Session: one connection + helpers shared by the phases


class Cred(object):
    def __init__(self, cred_id, key, rk, user_id, counter, alg, rp_id):
        self.id = cred_id
        self.key = key  # CoseKey
        self.rk = rk
        self.user_id = user_id
        self.counter = counter
        self.alg = alg
        self.rp_id = rp_id

    def to_json(self):
        return {
            "id": self.id.hex(),
            "key": cbor.encode(dict(self.key)).hex(),
            "rk": self.rk,
            "user": self.user_id.hex(),
            "counter": self.counter,
            "alg": self.alg,
            "rp": self.rp_id,
        }

    @classmethod
    def from_json(cls, d):
        return cls(
            bytes.fromhex(d["id"]),
            CoseKey.parse(cbor.decode(bytes.fromhex(d["key"]))),
            d["rk"],
            bytes.fromhex(d["user"]),
            d["counter"],
            d["alg"],
            d["rp"],
        )


class Session(object):
    def __init__(self, sock, chk, protocol=None, pin=None):
        self.sock = sock
        self.chk = chk
        self.dev = open_device(sock)
        self.ctap = Ctap2(self.dev)
        self.info = self.ctap.info
        self.pin = pin
        self.proto = None
        self.cp = None
        if protocol is not None:
            self.proto = PinProtocolV1() if protocol == 1 else PinProtocolV2()
            self.cp = ClientPin(self.ctap, self.proto)
        self.counters = {}

    def close(self):
        self.dev.close()

    # -- raw access -------------------------------------------------------

    def raw(self, cmd, payload=b""):
        """Sends cmd||payload as CTAPHID_CBOR; returns (status, body)."""
        resp = self.dev.call(CTAPHID.CBOR, bytes([cmd]) + payload)
        if not resp:
            raise AssertionError("empty CTAPHID_CBOR response")
        return resp[0], resp[1:]

    # -- PIN helpers ------------------------------------------------------

    def token(self, perms, rp_id=None, pin=None):
        return self.cp.get_pin_token(pin or self.pin, perms, rp_id)

    def uv_args(self, cdh, perms, rp_id):
        """pin_uv_param/pin_uv_protocol kwargs for one MC/GA (fresh token)."""
        if not self.pin:
            return {}
        tok = self.token(perms, rp_id)
        return {
            "pin_uv_param": self.proto.authenticate(tok, cdh),
            "pin_uv_protocol": self.proto.VERSION,
        }

    # -- makeCredential ---------------------------------------------------

    def mc(self, rp, usr, params, rk=False, exclude=None, options=None, cdh=None,
           uv=None):
        """Raw makeCredential; returns (AttestationObject, cdh)."""
        cdh = cdh or new_cdh()
        opts = dict(options or {})
        if rk:
            opts["rk"] = True
        kw = self.uv_args(cdh, PERM_MC, rp["id"]) if uv is None else uv(cdh)
        att = self.ctap.make_credential(
            cdh, rp, usr, params, exclude_list=exclude, options=opts or None, **kw
        )
        return att, cdh

    def make(self, label, rp, usr, params, want_alg, rk=False, exclude=None,
             want_uv=None):
        """makeCredential + full verification; returns a Cred."""
        try:
            att, cdh = self.mc(rp, usr, params, rk=rk, exclude=exclude)
        except CtapError as e:
            self.chk.fail(label, "makeCredential failed: %s" % e)
            raise Failed(label)
        self.chk.ok(label)
        want_uv = bool(self.pin) if want_uv is None else want_uv
        return self.verify_attestation(label, att, cdh, rp["id"], want_alg, want_uv,
                                       rk, usr["id"])

    def verify_attestation(self, label, att, cdh, rp_id, want_alg, want_uv, rk,
                           user_id):
        c = self.chk
        ad = att.auth_data
        c.eq(label + ": rpIdHash", ad.rp_id_hash, sha256(rp_id.encode()))
        c.check(label + ": flags UP and AT set", ad.flags & FLAG_UP and ad.flags & FLAG_AT,
                "flags=0x%02x" % ad.flags)
        c.check(label + ": flag UV %s" % ("set" if want_uv else "clear"),
                bool(ad.flags & FLAG_UV) == want_uv, "flags=0x%02x" % ad.flags)
        cd = ad.credential_data
        if not c.check(label + ": attested credential data present", cd is not None):
            raise Failed(label)
        c.eq(label + ": AAGUID matches getInfo", cd.aaguid, self.info.aaguid)
        c.check(label + ": credential id length 1..1023", 0 < len(cd.credential_id) <= 1023,
                "len=%d" % len(cd.credential_id))
        c.eq(label + ": credential public key alg", cd.public_key.get(3), want_alg)
        if att.fmt == "packed":
            st = att.att_statement
            c.check(label + ": packed self attestation has alg+sig, no x5c",
                    set(st.keys()) == {"alg", "sig"}, "attStmt keys %r" % sorted(st.keys()))
            c.eq(label + ": attStmt alg", st.get("alg"), want_alg)
            try:
                res = PackedAttestation().verify(st, ad, cdh)
                c.check(label + ": packed attestation signature verifies",
                        res.attestation_type == AttestationType.SELF,
                        "type %r" % (res.attestation_type,))
            except Exception as e:  # noqa: BLE001
                c.fail(label + ": packed attestation signature verifies", repr(e))
        elif att.fmt == "none":
            try:
                NoneAttestation().verify(att.att_statement, ad, cdh)
                c.ok(label + ": none attestation statement is empty")
            except Exception as e:  # noqa: BLE001
                c.fail(label + ": none attestation statement is empty", repr(e))
        else:
            c.fail(label + ": attestation fmt packed or none", "fmt=%r" % att.fmt)
        cred = Cred(cd.credential_id, cd.public_key, rk, user_id, ad.counter, want_alg,
                    rp_id)
        self.counters[cred.id] = ad.counter
        return cred

    # -- getAssertion -----------------------------------------------------

    def ga(self, rp_id, allow=None, options=None, cdh=None, uv=None):
        cdh = cdh or new_cdh()
        kw = self.uv_args(cdh, PERM_GA, rp_id) if uv is None else uv(cdh)
        resp = self.ctap.get_assertion(rp_id, cdh, allow_list=allow, options=options, **kw)
        return resp, cdh

    def verify_assertion(self, label, resp, cdh, rp_id, cred, want_uv=None, want_up=True):
        """Checks one AssertionResponse against a known Cred."""
        c = self.chk
        want_uv = bool(self.pin) if want_uv is None else want_uv
        ad = resp.auth_data
        ok = c.eq(label + ": rpIdHash", ad.rp_id_hash, sha256(rp_id.encode()))
        ok &= c.check(label + ": flag UP %s" % ("set" if want_up else "clear"),
                      bool(ad.flags & FLAG_UP) == want_up, "flags=0x%02x" % ad.flags)
        ok &= c.check(label + ": flag UV %s" % ("set" if want_uv else "clear"),
                      bool(ad.flags & FLAG_UV) == want_uv, "flags=0x%02x" % ad.flags)
        ok &= c.check(label + ": no attested credential data in assertion",
                      not ad.flags & FLAG_AT, "flags=0x%02x" % ad.flags)
        try:
            cred.key.verify(bytes(ad) + cdh, resp.signature)
            c.ok(label + ": assertion signature verifies (%s)" % _alg_name(cred.alg))
        except Exception as e:  # noqa: BLE001
            ok = False
            c.fail(label + ": assertion signature verifies", repr(e))
        last = self.counters.get(cred.id, cred.counter)
        ok &= c.check(label + ": signature counter increases",
                      ad.counter > last, "counter %d after %d" % (ad.counter, last))
        self.counters[cred.id] = max(last, ad.counter)
        cred.counter = self.counters[cred.id]
        return ok

    def assertion_cred_id(self, resp):
        return (resp.credential or {}).get("id")


def _alg_name(alg):
    return {-7: "ES256", -8: "EdDSA"}.get(alg, str(alg))


def save_state(path, rp_id, creds, extra=None):
    if not path:
        return
    data = {"rp": rp_id, "creds": [c.to_json() for c in creds]}
    data.update(extra or {})
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def load_state(path):
    with open(path) as f:
        data = json.load(f)
    data["creds"] = [Cred.from_json(d) for d in data["creds"]]
    return data


# --------------------------------------------------------------------------
# Phases


def phase_info(s, a):
    c = s.chk
    info = s.ctap.get_info()
    c.check("CTAPHID capabilities include CBOR", s.dev.capabilities & CAPABILITY.CBOR,
            "caps=0x%02x" % s.dev.capabilities)
    c.eq("CTAPHID protocol version", s.dev.version, 2)
    c.check("CTAPHID channel id allocated (not 0 or broadcast)",
            s.dev._channel_id not in (0, 0xFFFFFFFF), "cid=%08x" % s.dev._channel_id)
    for n in (1, 57, 200):
        msg = os.urandom(n)
        c.eq("CTAPHID PING echoes %d bytes" % n, s.dev.ping(msg), msg)
    c.expect_err("unknown CTAPHID command -> ERR_INVALID_CMD", 0x01, s.dev.call, 0x30, b"")

    # The brief says FIDO_2_0 + FIDO_2_1, but CTAP 2.1 §9 makes hmac-secret
    # and credProtect mandatory for FIDO_2_1; without them FIDO_2_1_PRE is the
    # honest claim. Accept either, and check the claim is consistent.
    vers = set(info.versions)
    c.check("versions include FIDO_2_0 and FIDO_2_1 or FIDO_2_1_PRE",
            "FIDO_2_0" in vers and ("FIDO_2_1" in vers or "FIDO_2_1_PRE" in vers),
            info.versions)
    if "FIDO_2_1" in vers:
        c.check("FIDO_2_1 claimed: extensions include hmac-secret and credProtect",
                {"hmac-secret", "credProtect"} <= set(info.extensions), info.extensions)
    if "FIDO_2_1_PRE" in vers:
        c.eq("FIDO_2_1_PRE claimed: credentialMgmtPreview option",
             info.options.get("credentialMgmtPreview"), True)
    c.eq("aaguid is 16 bytes", len(info.aaguid), 16)
    opts = info.options
    for k in ("rk", "up", "pinUvAuthToken", "credMgmt", "credentialMgmtPreview"):
        c.eq("option %s is true" % k, opts.get(k), True)
    want_pin = a.expect_pin == "set"
    c.eq("option clientPin is %s" % str(want_pin).lower(), opts.get("clientPin"), want_pin)
    algs = info.algorithms or []
    pairs = sorted((d.get("type"), d.get("alg")) for d in algs)
    c.eq("algorithms are ES256 and EdDSA", pairs, [("public-key", -8), ("public-key", -7)])
    c.eq("pinUvAuthProtocols [2, 1]", info.pin_uv_protocols, [2, 1])
    c.check("maxMsgSize >= 1024", info.max_msg_size >= 1024, info.max_msg_size)
    c.check("getInfo response is canonical CBOR (python-fido2 strict mode)", True)

    for ver, proto in ((1, PinProtocolV1()), (2, PinProtocolV2())):
        cp = ClientPin(s.ctap, proto)
        retries, _ = cp.get_pin_retries()
        if a.expect_retries is not None:
            c.eq("protocol %d getPINRetries" % ver, retries, a.expect_retries)
        else:
            c.check("protocol %d getPINRetries in 1..8" % ver, 1 <= retries <= 8, retries)
        st, body = s.raw(CMD_PIN, cbor.encode({1: ver, 2: 2}))
        ka = cbor.decode(body).get(1, {}) if st == 0 else {}
        c.check("protocol %d getKeyAgreement returns a P-256 COSE key" % ver,
                st == 0 and ka.get(1) == 2 and ka.get(-1) == 1 and len(ka.get(-2, b"")) == 32
                and len(ka.get(-3, b"")) == 32, "status 0x%02x key %r" % (st, ka))

    # A second connection is another "process": its own channel, same device.
    other = open_device(s.sock)
    try:
        c.check("second connection gets a different channel id",
                other._channel_id != s.dev._channel_id,
                "%08x vs %08x" % (other._channel_id, s.dev._channel_id))
        info2 = Ctap2(other).info
        c.eq("second connection sees the same aaguid", info2.aaguid, info.aaguid)
    finally:
        other.close()
    c.eq("first connection still works", s.ctap.get_info().aaguid, info.aaguid)


def phase_malformed(s, a):
    c = s.chk
    rp = {"id": "malformed.example", "name": "Malformed"}
    usr = user("malformed")
    cdh = new_cdh()

    st, _ = s.raw(CMD_MC, b"\xa4\x01")  # map(4) with one truncated key
    c.expect_status("truncated CBOR map -> INVALID_CBOR", 0x12, st)
    st, _ = s.raw(CMD_MC, b"\xff")
    c.expect_status("stray CBOR break byte -> INVALID_CBOR", 0x12, st)
    st, _ = s.raw(CMD_GA, b"\xa2\x01\x61")  # text string cut short
    c.expect_status("truncated text string in getAssertion -> INVALID_CBOR", 0x12, st)

    st, _ = s.raw(CMD_MC, cbor.encode({1: "not bytes", 2: rp, 3: usr, 4: [ES256]}))
    c.expect_status("makeCredential clientDataHash as text -> CBOR_UNEXPECTED_TYPE", 0x11, st)
    st, _ = s.raw(CMD_MC, cbor.encode({1: cdh, 2: rp, 3: usr, 4: ES256}))
    c.expect_status("makeCredential pubKeyCredParams as map -> CBOR_UNEXPECTED_TYPE", 0x11, st)
    st, _ = s.raw(CMD_GA, cbor.encode({1: 42, 2: cdh}))
    c.expect_status("getAssertion rpId as integer -> CBOR_UNEXPECTED_TYPE", 0x11, st)
    st, _ = s.raw(CMD_PIN, cbor.encode({1: 2, 2: "one"}))
    c.expect_status("clientPIN subCommand as text -> CBOR_UNEXPECTED_TYPE", 0x11, st)

    st, _ = s.raw(CMD_MC, cbor.encode({2: rp, 3: usr, 4: [ES256]}))
    c.expect_status("makeCredential without clientDataHash -> MISSING_PARAMETER", 0x14, st)
    st, _ = s.raw(CMD_MC, cbor.encode({1: cdh, 3: usr, 4: [ES256]}))
    c.expect_status("makeCredential without rp -> MISSING_PARAMETER", 0x14, st)
    st, _ = s.raw(CMD_GA, cbor.encode({1: "malformed.example"}))
    c.expect_status("getAssertion without clientDataHash -> MISSING_PARAMETER", 0x14, st)
    st, _ = s.raw(CMD_PIN, cbor.encode({1: 2}))
    c.expect_status("clientPIN without subCommand -> MISSING_PARAMETER", 0x14, st)

    for cmd in (0x20, 0x3F):
        st, _ = s.raw(cmd, b"")
        c.expect_status("unknown command 0x%02X -> INVALID_COMMAND" % cmd, 0x01, st)
    st, _ = s.raw(CMD_PIN, cbor.encode({1: 2, 2: 0x42}))
    c.expect_status("clientPIN subCommand 0x42 -> INVALID_SUBCOMMAND", 0x3E, st)

    # Unknown map keys are ignored (CTAP 2.2 added MC key 0x0B; conformance sends more).
    st, body = s.raw(CMD_MC, cbor.encode({1: cdh, 2: rp, 3: usr, 4: [ES256], 0x1F: "x"}))
    c.expect_status("makeCredential with an unknown map key succeeds", 0x00, st)

    c.eq("daemon still answers getInfo after malformed input",
         s.ctap.get_info().aaguid, s.info.aaguid)


def phase_selection(s, a):
    c = s.chk
    try:
        s.ctap.selection()
        c.ok("authenticatorSelection (0x0B) succeeds")
    except CtapError as e:
        c.fail("authenticatorSelection (0x0B) succeeds", str(e))
    st, body = s.raw(CMD_SELECTION)
    c.check("raw selection returns status 0 and no body", st == 0 and body == b"",
            "status 0x%02x body %r" % (st, body))


def phase_seed(s, a):
    rp_id = a.rp or "seed.example"
    rp = {"id": rp_id, "name": "Seed"}
    rk = s.make("seed discoverable ES256", rp, user("seed-rk"), [ES256], -7, rk=True)
    nr = s.make("seed non-discoverable EdDSA", rp, user("seed-nr"), [EDDSA], -8)
    save_state(a.state, rp_id, [rk, nr])


def phase_mc_ga(s, a):
    c = s.chk
    rp_id = a.rp or "example.com"
    rp = {"id": rp_id, "name": "Example RP"}
    uv = bool(s.pin)

    # -- makeCredential, algorithm choice -----------------------------------
    nr_es = s.make("non-resident ES256", rp, user("nr-es256"), [ES256], -7)
    nr_ed = s.make("non-resident EdDSA", rp, user("nr-eddsa"), [EDDSA], -8)
    s.make("[EdDSA, ES256] picks EdDSA", rp, user("p1"), [EDDSA, ES256], -8)
    s.make("[ES256, EdDSA] picks ES256", rp, user("p2"), [ES256, EDDSA], -7)
    s.make("[RS256, ES384, EdDSA, ES256] picks EdDSA", rp, user("p3"),
           [RS256, ES384, EDDSA, ES256], -8)
    s.make("entry with unknown type is skipped", rp, user("p4"),
           [{"type": "secret-key", "alg": -7}, EDDSA], -8)
    c.expect_err("only unsupported algorithms -> UNSUPPORTED_ALGORITHM", 0x26,
                 s.mc, rp, user("p5"), [RS256, ES384])
    c.expect_err("empty pubKeyCredParams -> UNSUPPORTED_ALGORITHM", 0x26,
                 s.mc, rp, user("p6"), [])
    c.expect_err("option up=false in makeCredential -> INVALID_OPTION", 0x2C,
                 s.mc, rp, user("p7"), [ES256], options={"up": False})
    if not uv:
        c.expect_err("option uv=true without built-in UV -> INVALID_OPTION", 0x2C,
                     s.mc, rp, user("p8"), [ES256], options={"uv": True})

    # -- discoverable credentials ------------------------------------------
    ua, ub = user("alice"), user("bob")
    rk_a = s.make("resident ES256 (alice)", rp, ua, [ES256], -7, rk=True)
    rk_b = s.make("resident EdDSA (bob)", rp, ub, [EDDSA], -8, rk=True)

    # -- getAssertion with allowList ---------------------------------------
    for cred, label in ((nr_es, "ES256"), (nr_ed, "EdDSA"), (rk_a, "resident ES256")):
        resp, cdh = s.ga(rp_id, allow=[desc(cred.id)])
        s.verify_assertion("GA allowList %s" % label, resp, cdh, rp_id, cred)
        c.eq("GA allowList %s: credential id echoed" % label, s.assertion_cred_id(resp), cred.id)
        c.check("GA allowList %s: numberOfCredentials absent (or 1)" % label,
                resp.number_of_credentials in (None, 1), resp.number_of_credentials)
    resp, cdh = s.ga(rp_id, allow=[desc(os.urandom(48)), desc(nr_ed.id)])
    c.eq("GA allowList [unknown, EdDSA] finds EdDSA", s.assertion_cred_id(resp), nr_ed.id)
    s.verify_assertion("GA allowList [unknown, EdDSA]", resp, cdh, rp_id, nr_ed)
    c.expect_err("GA allowList with only unknown ids -> NO_CREDENTIALS", 0x2E,
                 s.ga, rp_id, allow=[desc(os.urandom(64))])
    c.expect_err("GA allowList for another rpId -> NO_CREDENTIALS", 0x2E,
                 s.ga, "other-" + rp_id, allow=[desc(nr_es.id)])

    # Repeated assertions: the counter is strictly increasing.
    for i in range(3):
        resp, cdh = s.ga(rp_id, allow=[desc(nr_es.id)])
        s.verify_assertion("GA repeat %d" % (i + 1), resp, cdh, rp_id, nr_es)

    # up=false: silent assertion, UP flag clear.
    resp, cdh = s.ga(rp_id, allow=[desc(nr_es.id)], options={"up": False})
    s.verify_assertion("GA up=false", resp, cdh, rp_id, nr_es, want_up=False)
    c.expect_err("GA option rk -> UNSUPPORTED_OPTION", 0x2B,
                 s.ga, rp_id, allow=[desc(nr_es.id)], options={"rk": True})

    # -- discoverable getAssertion + getNextAssertion -----------------------
    by_id = {rk_a.id: rk_a, rk_b.id: rk_b}

    def discoverable(label, allow, want_ids, newest=None):
        resp, cdh = s.ga(rp_id, allow=allow)
        c.eq(label + ": numberOfCredentials", resp.number_of_credentials, len(want_ids))
        got = [resp]
        for _ in range(1, resp.number_of_credentials or 1):
            got.append(s.ctap.get_next_assertion())
        ids = [s.assertion_cred_id(r) for r in got]
        c.eq(label + ": returns exactly the discoverable credentials",
             sorted(ids), sorted(want_ids))
        if newest is not None:
            c.eq(label + ": newest credential first", ids[0], newest)
        for i, r in enumerate(got):
            cred = by_id.get(s.assertion_cred_id(r))
            if cred is None:
                c.fail(label + ": response %d is a known credential" % i)
                continue
            s.verify_assertion("%s #%d" % (label, i), r, cdh, rp_id, cred)
            usr = r.user or {}
            c.eq("%s #%d: user.id" % (label, i), usr.get("id"), cred.user_id)
            if i > 0:
                c.check("%s #%d: no numberOfCredentials in getNextAssertion" % (label, i),
                        r.number_of_credentials is None, r.number_of_credentials)
            if not uv:
                c.check("%s #%d: without UV user holds only id" % (label, i),
                        set(usr.keys()) <= {"id"}, sorted(usr.keys()))
        c.expect_err(label + ": getNextAssertion past the end -> NOT_ALLOWED", 0x30,
                     s.ctap.get_next_assertion)

    discoverable("GA no allowList", None, [rk_a.id, rk_b.id], newest=rk_b.id)
    discoverable("GA empty allowList", [], [rk_a.id, rk_b.id])
    c.expect_err("discoverable GA for an rpId without credentials -> NO_CREDENTIALS",
                 0x2E, s.ga, "nobody-" + rp_id)

    # -- excludeList -------------------------------------------------------
    c.expect_err("excludeList with a resident credential -> CREDENTIAL_EXCLUDED", 0x19,
                 s.mc, rp, user("ex1"), [ES256], exclude=[desc(rk_b.id)])
    c.expect_err("excludeList with a non-resident credential -> CREDENTIAL_EXCLUDED", 0x19,
                 s.mc, rp, user("ex2"), [ES256], exclude=[desc(os.urandom(40)), desc(nr_ed.id)])
    s.make("excludeList with unknown ids only succeeds", rp, user("ex3"), [ES256], -7,
           exclude=[desc(os.urandom(40))])
    s.make("excludeList with another rp's credential succeeds",
           {"id": "other-" + rp_id, "name": "Other"}, user("ex4"), [ES256], -7,
           exclude=[desc(nr_es.id)])

    # -- same (rp, user.id) overwrites the discoverable credential ---------
    rk_a2 = s.make("resident again for alice (overwrite)", rp, ua, [ES256], -7, rk=True)
    by_id = {rk_a2.id: rk_a2, rk_b.id: rk_b}
    c.check("overwrite produced a new credential id", rk_a2.id != rk_a.id)
    discoverable("GA after overwrite", None, [rk_a2.id, rk_b.id], newest=rk_a2.id)
    c.expect_err("overwritten credential is gone -> NO_CREDENTIALS", 0x2E,
                 s.ga, rp_id, allow=[desc(rk_a.id)])

    save_state(a.state, rp_id, [nr_es, nr_ed, rk_a2, rk_b])


def phase_persist(s, a):
    c = s.chk
    st = load_state(a.state)
    rp_id = st["rp"]
    creds = st["creds"]
    for cred in creds:
        s.counters[cred.id] = cred.counter
        label = "after restart %s %s" % ("resident" if cred.rk else "non-resident",
                                         _alg_name(cred.alg))
        try:
            resp, cdh = s.ga(cred.rp_id, allow=[desc(cred.id)])
        except CtapError as e:
            c.fail(label + ": getAssertion", str(e))
            continue
        s.verify_assertion(label, resp, cdh, cred.rp_id, cred)
    rks = sorted(cr.id for cr in creds if cr.rk)
    if rks:
        try:
            resp, cdh = s.ga(rp_id)
            got = [resp] + [s.ctap.get_next_assertion()
                            for _ in range(1, resp.number_of_credentials or 1)]
            c.eq("after restart discoverable credentials", sorted(
                s.assertion_cred_id(r) for r in got), rks)
        except CtapError as e:
            c.fail("after restart discoverable credentials", str(e))
    save_state(a.state, rp_id, creds)


def _raw_set_pin(s, padded):
    """setPIN with an arbitrary padded PIN (bypasses python-fido2's checks)."""
    ka, shared = s.cp._get_shared_secret()
    enc = s.proto.encrypt(shared, padded)
    return s.ctap.client_pin(s.proto.VERSION, ClientPin.CMD.SET_PIN, key_agreement=ka,
                             new_pin_enc=enc, pin_uv_param=s.proto.authenticate(shared, enc))


def _raw_change_pin(s, old_pin, padded_new):
    ka, shared = s.cp._get_shared_secret()
    pin_hash_enc = s.proto.encrypt(shared, sha256(old_pin.encode())[:16])
    new_enc = s.proto.encrypt(shared, padded_new)
    return s.ctap.client_pin(
        s.proto.VERSION, ClientPin.CMD.CHANGE_PIN, key_agreement=ka,
        pin_hash_enc=pin_hash_enc, new_pin_enc=new_enc,
        pin_uv_param=s.proto.authenticate(shared, new_enc + pin_hash_enc))


def phase_pin_policy(s, a):
    c = s.chk
    v = s.proto.VERSION
    c.expect_err("v%d setPIN with 3-character PIN -> PIN_POLICY_VIOLATION" % v, 0x37,
                 _raw_set_pin, s, b"123".ljust(64, b"\0"))
    c.expect_err("v%d setPIN with 64-byte PIN -> PIN_POLICY_VIOLATION" % v, 0x37,
                 _raw_set_pin, s, b"7" * 64)
    c.expect_err("v%d setPIN with 32-byte padded PIN -> INVALID_PARAMETER" % v, 0x02,
                 _raw_set_pin, s, b"123456".ljust(32, b"\0"))
    c.expect_err("v%d getPinToken before a PIN is set -> PIN_NOT_SET" % v, 0x35,
                 s.cp.get_pin_token, "123456", PERM_MC, "example.com")
    c.expect_err("v%d makeCredential with empty pinUvAuthParam, no PIN -> PIN_NOT_SET" % v,
                 0x35, s.mc, {"id": "policy.example"}, user("policy"), [ES256],
                 uv=lambda cdh: {"pin_uv_param": b"", "pin_uv_protocol": v})
    c.eq("v%d clientPin still false" % v, s.ctap.get_info().options.get("clientPin"), False)


def phase_set_pin(s, a):
    c = s.chk
    v = s.proto.VERSION
    try:
        s.cp.set_pin(s.pin)
        c.ok("v%d setPIN" % v)
    except CtapError as e:
        c.fail("v%d setPIN" % v, str(e))
        raise Failed("setPIN")
    c.eq("clientPin true after setPIN", s.ctap.get_info().options.get("clientPin"), True)
    c.eq("getPINRetries is 8 after setPIN", s.cp.get_pin_retries()[0], 8)
    c.expect_err("setPIN again -> PIN_AUTH_INVALID", 0x33, s.cp.set_pin, "99999999")
    tok = s.token(PERM_MC | PERM_GA, "example.com")
    c.eq("PIN token is 32 bytes", len(tok), 32)


def phase_pin(s, a):
    c = s.chk
    v = s.proto.VERSION
    rp_id = a.rp or "pin%d.example" % v
    rp = {"id": rp_id, "name": "PIN RP"}
    pfx = "v%d " % v
    c.eq(pfx + "getPINRetries", s.cp.get_pin_retries()[0], 8)

    tok = s.token(PERM_MC | PERM_GA, rp_id)
    c.eq(pfx + "token (mc|ga, rpId) is 32 bytes", len(tok), 32)
    with_tok = lambda t: (lambda cdh: {"pin_uv_param": s.proto.authenticate(t, cdh),  # noqa: E731
                                       "pin_uv_protocol": v})
    try:
        att, cdh = s.mc(rp, user("pin-mc"), [ES256], uv=with_tok(tok))
        cred = s.verify_attestation(pfx + "MC with pinUvAuthParam", att, cdh, rp_id, -7,
                                    True, False, user("pin-mc")["id"])
    except CtapError as e:
        c.fail(pfx + "MC with pinUvAuthParam", str(e))
        raise Failed("MC with token")
    c.expect_err(pfx + "token is single-use for MC -> PIN_AUTH_INVALID", 0x33,
                 s.mc, rp, user("pin-mc2"), [ES256], uv=with_tok(tok))

    tok = s.token(PERM_GA, rp_id)
    resp, cdh = s.ga(rp_id, allow=[desc(cred.id)], uv=with_tok(tok))
    s.verify_assertion(pfx + "GA with pinUvAuthParam (ga, rpId)", resp, cdh, rp_id, cred,
                       want_uv=True)
    resp, cdh = s.ga(rp_id, allow=[desc(cred.id)], uv=lambda cdh: {})
    s.verify_assertion(pfx + "GA without pinUvAuthParam while PIN set", resp, cdh, rp_id,
                       cred, want_uv=False)

    tok = s.token(PERM_MC, "other.example")
    c.expect_err(pfx + "token bound to another rpId -> PIN_AUTH_INVALID", 0x33,
                 s.mc, rp, user("pin-x"), [ES256], uv=with_tok(tok))
    tok = s.token(PERM_GA, rp_id)
    c.expect_err(pfx + "token without mc permission used for MC -> PIN_AUTH_INVALID", 0x33,
                 s.mc, rp, user("pin-x"), [ES256], uv=with_tok(tok))
    tok = s.token(PERM_MC, rp_id)
    c.expect_err(pfx + "token without ga permission used for GA -> PIN_AUTH_INVALID", 0x33,
                 s.ga, rp_id, allow=[desc(cred.id)], uv=with_tok(tok))
    s.token(PERM_MC, rp_id)
    c.expect_err(pfx + "wrong pinUvAuthParam -> PIN_AUTH_INVALID", 0x33,
                 s.mc, rp, user("pin-x"), [ES256],
                 uv=lambda cdh: {"pin_uv_param": os.urandom(16 if v == 1 else 32),
                                 "pin_uv_protocol": v})
    c.expect_err(pfx + "pinUvAuthParam without pinUvAuthProtocol -> MISSING_PARAMETER", 0x14,
                 s.mc, rp, user("pin-x"), [ES256],
                 uv=lambda cdh: {"pin_uv_param": os.urandom(32)})
    c.expect_err(pfx + "pinUvAuthProtocol 3 -> INVALID_PARAMETER", 0x02,
                 s.mc, rp, user("pin-x"), [ES256],
                 uv=lambda cdh: {"pin_uv_param": os.urandom(32), "pin_uv_protocol": 3})
    c.expect_err(pfx + "resident MC without UV while PIN set -> PUAT_REQUIRED", 0x36,
                 s.mc, rp, user("pin-rk"), [ES256], rk=True, uv=lambda cdh: {})
    c.expect_err(pfx + "empty pinUvAuthParam while PIN set -> PIN_INVALID", 0x31,
                 s.mc, rp, user("pin-x"), [ES256],
                 uv=lambda cdh: {"pin_uv_param": b"", "pin_uv_protocol": v})

    # getPinUvAuthTokenUsingPinWithPermissions parameter checks (raw).
    def raw_token(perms):
        ka, shared = s.cp._get_shared_secret()
        return s.ctap.client_pin(v, ClientPin.CMD.GET_TOKEN_USING_PIN, key_agreement=ka,
                                 pin_hash_enc=s.proto.encrypt(shared, sha256(s.pin.encode())[:16]),
                                 permissions=perms, permissions_rpid=rp_id)
    c.expect_err(pfx + "token with permissions 0 -> INVALID_PARAMETER", 0x02, raw_token, 0)
    c.expect_err(pfx + "token without permissions -> MISSING_PARAMETER", 0x14, raw_token, None)

    # Legacy getPinToken (0x05): default permissions mc|ga, no rpId.
    ka, shared = s.cp._get_shared_secret()
    r = s.ctap.client_pin(v, ClientPin.CMD.GET_TOKEN_USING_PIN_LEGACY, key_agreement=ka,
                          pin_hash_enc=s.proto.encrypt(shared, sha256(s.pin.encode())[:16]))
    legacy = s.proto.decrypt(shared, r[ClientPin.RESULT.PIN_UV_TOKEN])
    try:
        att, cdh = s.mc(rp, user("pin-legacy"), [EDDSA], uv=with_tok(legacy))
        s.verify_attestation(pfx + "MC with legacy getPinToken (0x05) token", att, cdh, rp_id,
                             -8, True, False, user("pin-legacy")["id"])
    except CtapError as e:
        c.fail(pfx + "MC with legacy getPinToken (0x05) token", str(e))

    # Wrong PIN: PIN_INVALID, retries decrement; the right PIN restores them.
    c.expect_err(pfx + "wrong PIN -> PIN_INVALID", 0x31, s.token, PERM_MC, rp_id, "000000")
    c.eq(pfx + "retries decremented to 7", s.cp.get_pin_retries()[0], 7)
    s.token(PERM_GA, rp_id)
    c.eq(pfx + "correct PIN resets retries to 8", s.cp.get_pin_retries()[0], 8)

    # changePIN round trip. Never two wrong PINs in a row (3 would block).
    new = s.pin + "99"
    s.cp.change_pin(s.pin, new)
    c.ok(pfx + "changePIN")
    c.eq(pfx + "token with the new PIN", len(s.token(PERM_GA, rp_id, new)), 32)
    c.expect_err(pfx + "old PIN after changePIN -> PIN_INVALID", 0x31,
                 s.token, PERM_GA, rp_id, s.pin)
    s.token(PERM_GA, rp_id, new)
    c.expect_err(pfx + "changePIN with wrong current PIN -> PIN_INVALID", 0x31,
                 s.cp.change_pin, "00000000", "12345678")
    s.token(PERM_GA, rp_id, new)
    c.expect_err(pfx + "changePIN to 3 characters -> PIN_POLICY_VIOLATION", 0x37,
                 _raw_change_pin, s, new, b"abc".ljust(64, b"\0"))
    s.cp.change_pin(new, s.pin)
    c.ok(pfx + "changePIN back")
    c.eq(pfx + "token with the original PIN", len(s.token(PERM_CM)), 32)
    c.eq(pfx + "getPINRetries back to 8", s.cp.get_pin_retries()[0], 8)


def phase_credman(s, a):
    c = s.chk
    v = s.proto.VERSION
    pfx = "v%d " % v
    rp1_id = a.rp or "cm%d.example" % v
    rp2_id = "two." + rp1_id
    rp1 = {"id": rp1_id, "name": "CredMan One"}
    rp2 = {"id": rp2_id, "name": "CredMan Two"}
    u1, u2, u3 = user("cm-u1-%d" % v), user("cm-u2-%d" % v), user("cm-u3-%d" % v)
    k1 = s.make(pfx + "create rk 1", rp1, u1, [ES256], -7, rk=True)
    k2 = s.make(pfx + "create rk 2", rp1, u2, [EDDSA], -8, rk=True)
    k3 = s.make(pfx + "create rk 3", rp2, u3, [ES256], -7, rk=True)

    tok = s.token(PERM_CM)
    cm = CredentialManagement(s.ctap, s.proto, tok)
    meta = cm.get_metadata()
    existing = meta.get(CredentialManagement.RESULT.EXISTING_CRED_COUNT)
    c.check(pfx + "getCredsMetadata existing >= 3", existing is not None and existing >= 3,
            meta)
    c.check(pfx + "getCredsMetadata remaining > 0",
            (meta.get(CredentialManagement.RESULT.MAX_REMAINING_COUNT) or 0) > 0, meta)

    def rps(mgr):
        out = {}
        for r in mgr.enumerate_rps():
            ent = r[CredentialManagement.RESULT.RP]
            out[ent["id"]] = (ent, r[CredentialManagement.RESULT.RP_ID_HASH])
        return out

    def creds(mgr, rp_id):
        return {
            r[CredentialManagement.RESULT.CREDENTIAL_ID]["id"]: r
            for r in mgr.enumerate_creds(sha256(rp_id.encode()))
        }

    all_rps = rps(cm)
    for rp in (rp1, rp2):
        ent = all_rps.get(rp["id"])
        if c.check(pfx + "enumerateRPs lists %s" % rp["id"], ent is not None, sorted(all_rps)):
            c.eq(pfx + "enumerateRPs rpIDHash for %s" % rp["id"], ent[1],
                 sha256(rp["id"].encode()))
    total = 0
    for rp_id in all_rps:
        total += len(creds(cm, rp_id))
    c.eq(pfx + "metadata count equals enumerated credentials", existing, total)

    got = creds(cm, rp1_id)
    c.eq(pfx + "enumerateCredentials rp1 ids", sorted(got), sorted([k1.id, k2.id]))
    for k, u in ((k1, u1), (k2, u2)):
        r = got.get(k.id)
        if r is None:
            continue
        c.eq(pfx + "enumerateCredentials user.id", r[CredentialManagement.RESULT.USER]["id"],
             u["id"])
        c.eq(pfx + "enumerateCredentials public key (%s)" % _alg_name(k.alg),
             dict(r[CredentialManagement.RESULT.PUBLIC_KEY]), dict(k.key))
        c.eq(pfx + "enumerateCredentials credentialID type",
             r[CredentialManagement.RESULT.CREDENTIAL_ID].get("type"), "public-key")

    newu = {"id": u1["id"], "name": "renamed-%d" % v, "displayName": "Renamed %d" % v}
    cm.update_user_info(desc(k1.id), newu)
    r = creds(cm, rp1_id).get(k1.id)
    c.check(pfx + "updateUserInformation changed name/displayName",
            r is not None and r[CredentialManagement.RESULT.USER].get("name") == newu["name"]
            and r[CredentialManagement.RESULT.USER].get("displayName") == newu["displayName"],
            r and r[CredentialManagement.RESULT.USER])

    # The 0x41 prototype alias must behave like 0x0A.
    pre = CredentialManagement(PreviewCtap2(s.dev), s.proto, tok)
    meta_pre = pre.get_metadata()
    c.eq(pfx + "0x41 preview getCredsMetadata equals 0x0A", meta_pre, meta)
    c.eq(pfx + "0x41 preview enumerateRPs equals 0x0A", sorted(rps(pre)), sorted(all_rps))
    c.eq(pfx + "0x41 preview enumerateCredentials equals 0x0A", sorted(creds(pre, rp1_id)),
         sorted([k1.id, k2.id]))
    st, body = s.raw(CMD_CM_PRE, cbor.encode(
        {1: 1, 3: v, 4: s.proto.authenticate(tok, b"\x01")}))
    c.check(pfx + "raw send 0x41 getCredsMetadata", st == 0 and cbor.decode(body) == meta,
            "status 0x%02x" % st)

    # Authentication failures.
    st, _ = s.raw(CMD_CM, cbor.encode({1: 1}))
    c.expect_status(pfx + "credMgmt without pinUvAuthParam -> PUAT_REQUIRED", 0x36, st)
    st, _ = s.raw(CMD_CM, cbor.encode({1: 1, 3: v, 4: os.urandom(16 if v == 1 else 32)}))
    c.expect_status(pfx + "credMgmt with wrong pinUvAuthParam -> PIN_AUTH_INVALID", 0x33, st)
    nocm = s.token(PERM_MC | PERM_GA, rp1_id)
    c.expect_err(pfx + "credMgmt with a token lacking cm -> PIN_AUTH_INVALID", 0x33,
                 CredentialManagement(s.ctap, s.proto, nocm).get_metadata)

    # Delete.
    tok = s.token(PERM_CM)
    cm = CredentialManagement(s.ctap, s.proto, tok)
    cm.delete_cred(desc(k2.id))
    c.eq(pfx + "deleteCredential removes it from enumeration", sorted(creds(cm, rp1_id)),
         [k1.id])
    c.eq(pfx + "metadata count decremented",
         cm.get_metadata()[CredentialManagement.RESULT.EXISTING_CRED_COUNT], existing - 1)
    c.expect_err(pfx + "deleteCredential unknown id -> NO_CREDENTIALS", 0x2E,
                 cm.delete_cred, desc(os.urandom(32)))
    cm.delete_cred(desc(k3.id))
    c.check(pfx + "RP without credentials disappears from enumerateRPs",
            rp2_id not in rps(cm), sorted(rps(cm)))
    c.expect_err(pfx + "getAssertion with a deleted credential -> NO_CREDENTIALS", 0x2E,
                 s.ga, rp1_id, allow=[desc(k2.id)])
    resp, cdh = s.ga(rp1_id)
    c.check(pfx + "discoverable GA after delete finds only the remaining credential",
            s.assertion_cred_id(resp) == k1.id and resp.number_of_credentials in (None, 1),
            "id %r n=%r" % (s.assertion_cred_id(resp), resp.number_of_credentials))
    s.verify_assertion(pfx + "GA remaining credential", resp, cdh, rp1_id, k1)
    cm = CredentialManagement(s.ctap, s.proto, s.token(PERM_CM))
    cm.delete_cred(desc(k1.id))
    c.ok(pfx + "delete the last credential of an RP")

    # enumerateCredentialsBegin for an RP without credentials: NO_CREDENTIALS,
    # also with a token bound to that RP ID (libfido2's fido_credman_get_dev_rk
    # always binds the token to the RP ID it enumerates). The bound RP ID is
    # compared by hash with rpIDHash, as OpenSK does
    # (has_no_or_rp_id_hash_permission).
    cm = CredentialManagement(s.ctap, s.proto, s.token(PERM_CM))
    c.expect_err(pfx + "enumerateCredentialsBegin, RP without credentials -> NO_CREDENTIALS",
                 0x2E, cm.enumerate_creds_begin, sha256(rp1_id.encode()))
    cm = CredentialManagement(s.ctap, s.proto, s.token(PERM_CM, rp1_id))
    c.expect_err(pfx + "enumerateCredentialsBegin, RP without credentials, token bound to "
                 "that rpId -> NO_CREDENTIALS", 0x2E,
                 cm.enumerate_creds_begin, sha256(rp1_id.encode()))
    cm = CredentialManagement(s.ctap, s.proto, s.token(PERM_CM, "other." + rp1_id))
    c.expect_err(pfx + "enumerateCredentialsBegin with a token bound to another rpId -> "
                 "PIN_AUTH_INVALID", 0x33, cm.enumerate_creds_begin, sha256(rp1_id.encode()))


def phase_block(s, a):
    c = s.chk
    r0 = s.cp.get_pin_retries()[0]
    c.expect_err("wrong PIN #1 -> PIN_INVALID", 0x31, s.token, PERM_GA, "x.example", "00000001")
    c.expect_err("wrong PIN #2 -> PIN_INVALID", 0x31, s.token, PERM_GA, "x.example", "00000002")
    c.expect_err("wrong PIN #3 -> PIN_AUTH_BLOCKED", 0x34, s.token, PERM_GA, "x.example",
                 "00000003")
    c.eq("retries decremented by 3", s.cp.get_pin_retries()[0], r0 - 3)
    c.expect_err("correct PIN while auth-blocked -> PIN_AUTH_BLOCKED", 0x34,
                 s.token, PERM_GA, "x.example")
    c.expect_err("changePIN while auth-blocked -> PIN_AUTH_BLOCKED", 0x34,
                 s.cp.change_pin, s.pin, s.pin + "1")
    retries, pcs = s.cp.get_pin_retries()
    c.eq("retries not decremented while auth-blocked", retries, r0 - 3)
    c.check("powerCycleState true or absent", pcs in (None, True), pcs)
    print("RETRIES %d" % retries, flush=True)


def phase_blocked(s, a):
    c = s.chk
    c.expect_err("correct PIN still -> PIN_AUTH_BLOCKED", 0x34, s.token, PERM_GA, "x.example")
    retries, pcs = s.cp.get_pin_retries()
    if a.expect_retries is not None:
        c.eq("retries unchanged", retries, a.expect_retries)
    c.check("powerCycleState true or absent", pcs in (None, True), pcs)


def phase_reset(s, a):
    c = s.chk
    try:
        s.ctap.reset()
        c.ok("authenticatorReset succeeds")
    except CtapError as e:
        c.fail("authenticatorReset succeeds", str(e))
        raise Failed("reset")
    info = s.ctap.get_info()
    c.eq("clientPin false after reset", info.options.get("clientPin"), False)
    c.eq("getPINRetries 8 after reset", ClientPin(s.ctap, PinProtocolV2()).get_pin_retries()[0], 8)
    if a.state:
        st = load_state(a.state)
        for cred in st["creds"]:
            c.expect_err("credential %s is gone after reset (allowList) -> NO_CREDENTIALS"
                         % cred.id.hex()[:12], 0x2E, s.ga, cred.rp_id, allow=[desc(cred.id)])
        c.expect_err("no discoverable credentials after reset -> NO_CREDENTIALS", 0x2E,
                     s.ga, st["rp"])
        try:
            s.mc({"id": st["rp"]}, user("after-reset"), [ES256],
                 exclude=[desc(cr.id) for cr in st["creds"]])
            c.ok("excludeList with pre-reset credentials no longer matches")
        except CtapError as e:
            c.fail("excludeList with pre-reset credentials no longer matches", str(e))


def phase_reset_late(s, a):
    s.chk.expect_err("authenticatorReset more than 10 s after start -> NOT_ALLOWED", 0x30,
                     s.ctap.reset)


def phase_presence(s, a):
    """Daemon runs --presence command:SCRIPT; SCRIPT denies rp deny.example."""
    c = s.chk
    ok_rp = {"id": "allow.example", "name": "Allowed"}
    deny_rp = {"id": "deny.example", "name": "Denied"}
    cred = s.make("presence approved makeCredential", ok_rp, user("carol"), [ES256], -7,
                  rk=True)
    c.expect_err("presence denied makeCredential -> OPERATION_DENIED", 0x27,
                 s.mc, deny_rp, user("dave"), [ES256])
    resp, cdh = s.ga(ok_rp["id"], allow=[desc(cred.id)])
    s.verify_assertion("presence approved getAssertion", resp, cdh, ok_rp["id"], cred)
    c.expect_err("excluded credential -> CREDENTIAL_EXCLUDED", 0x19,
                 s.mc, ok_rp, user("erin"), [ES256], exclude=[desc(cred.id)])
    try:
        s.ctap.selection()
        c.ok("presence approved selection")
    except CtapError as e:
        c.fail("presence approved selection", str(e))
    resp, cdh = s.ga(ok_rp["id"], allow=[desc(cred.id)], options={"up": False})
    s.verify_assertion("up=false getAssertion (no prompt)", resp, cdh, ok_rp["id"], cred,
                       want_up=False)


# --------------------------------------------------------------------------
# CTAP 2.1 extensions, authenticatorLargeBlobs and authenticatorConfig
# (issue 3). Reference: ctap-checklist.md §1.4, §1.10, §1.11, §3.

EXT_NAMES = ["credBlob", "credProtect", "hmac-secret", "hmac-secret-mc", "largeBlobKey",
             "minPinLength"]
MAX_CRED_BLOB = 32             # getInfo 0x0F
MAX_LARGE_BLOB = 8192          # getInfo 0x0B
MAX_RPIDS_MIN_PIN = 8          # getInfo 0x10
# CBOR [] followed by LEFT(SHA-256(h'80'), 16) (CTAP 2.1 §6.10.2).
EMPTY_LB_ARRAY = bytes.fromhex("8076be8b528d0075f7aae98d6fa57a6d3c")

PERM_LBW = ClientPin.PERMISSION.LARGE_BLOB_WRITE
PERM_ACFG = ClientPin.PERMISSION.AUTHENTICATOR_CFG
CMD_LB, CMD_CFG = 0x0C, 0x0D
CFG_EA, CFG_ALWAYS_UV, CFG_MIN_PIN = 0x01, 0x02, 0x03

# Response keys a CTAP 2.1 client accepts (python-fido2 0.9.1 raises on
# anything else): makeCredential 0x01-0x05, getAssertion 0x01-0x07.
MC_KEYS = {1, 2, 3, 4, 5}
GA_KEYS = {1, 2, 3, 4, 5, 6, 7}


def ext_outputs(c, label, ad):
    """authData extension outputs; checks the ED flag agrees with them."""
    ext = ad.extensions
    c.check(label + ": ED flag %s" % ("set" if ext is not None else "clear"),
            bool(ad.flags & FLAG_ED) == (ext is not None), "flags=0x%02x ext=%r"
            % (ad.flags, ext))
    return ext or {}


def xauth(s, cdh, perms, rp_id, uv):
    """pinUvAuthParam kwargs when uv is requested (needs --pin)."""
    if not uv:
        return {}
    if not s.pin:
        raise Failed("internal: UV requested but no --pin given")
    return s.uv_args(cdh, perms, rp_id)


def _exts(exts):
    return exts() if callable(exts) else exts


def xmc(s, rp, usr, exts=None, rk=False, uv=None, exclude=None, params=None,
        options=None, cdh=None):
    """makeCredential with extensions; uv=None means 'UV iff a PIN is known'.
    exts may be a callable, evaluated after the PIN token was obtained (so a
    key agreement for hmac-secret-mc is never followed by a token request)."""
    cdh = cdh or new_cdh()
    uv = bool(s.pin) if uv is None else uv
    opts = dict(options or {})
    if rk:
        opts["rk"] = True
    kw = xauth(s, cdh, PERM_MC, rp["id"], uv)
    att = s.ctap.make_credential(cdh, rp, usr, params or [ES256], exclude_list=exclude,
                                 extensions=_exts(exts), options=opts or None, **kw)
    return att, cdh


def xga(s, rp_id, allow=None, exts=None, uv=None, options=None, cdh=None):
    cdh = cdh or new_cdh()
    uv = bool(s.pin) if uv is None else uv
    kw = xauth(s, cdh, PERM_GA, rp_id, uv)
    resp = s.ctap.get_assertion(rp_id, cdh, allow_list=allow, extensions=_exts(exts),
                                options=options, **kw)
    return resp, cdh


def xga_all(s, rp_id, allow=None, exts=None, uv=None, options=None):
    """getAssertion + every getNextAssertion; returns ([responses], cdh)."""
    first, cdh = xga(s, rp_id, allow, exts, uv, options)
    rest = [s.ctap.get_next_assertion() for _ in range(1, first.number_of_credentials or 1)]
    return [first] + rest, cdh


def xmake(s, label, rp, usr, exts=None, rk=False, uv=None, want_ext=None, params=None,
          alg=-7):
    """makeCredential + attestation checks + exact extension outputs."""
    uv = bool(s.pin) if uv is None else uv
    try:
        att, cdh = xmc(s, rp, usr, exts, rk=rk, uv=uv, params=params)
    except Exception as e:  # noqa: BLE001 - CtapError, or a response python-fido2 rejects
        s.chk.fail(label, "makeCredential failed: %r" % e)
        raise Failed(label)
    s.chk.ok(label)
    cred = s.verify_attestation(label, att, cdh, rp["id"], alg, uv, rk, usr["id"])
    got = ext_outputs(s.chk, label, att.auth_data)
    if want_ext is not None:
        s.chk.eq(label + ": extension outputs", got, want_ext)
    return cred, att


def ids_of(s, resps):
    return [s.assertion_cred_id(r) for r in resps]


def raw_cbor(s, cmd, req):
    """Raw command; returns (status, decoded map or None)."""
    st, body = s.raw(cmd, cbor.encode(req))
    return st, (cbor.decode(body) if st == 0 and body else None)


# -- hmac-secret -------------------------------------------------------------


class HmacInput(object):
    """One hmac-secret / hmac-secret-mc input (fresh key agreement)."""

    def __init__(self, s, salts, proto=None):
        self.proto = proto or s.proto
        cp = ClientPin(s.ctap, self.proto)
        self.ka, self.shared = cp._get_shared_secret()
        self.salts = salts
        self.salt_enc = self.proto.encrypt(self.shared, b"".join(salts))
        self.salt_auth = self.proto.authenticate(self.shared, self.salt_enc)

    def ext(self, omit=(), **over):
        m = {1: self.ka, 2: self.salt_enc, 3: self.salt_auth, 4: self.proto.VERSION}
        for k in omit:
            m.pop(k, None)
        for k, v in over.items():
            m[{"ka": 1, "enc": 2, "auth": 3, "proto": 4}[k]] = v
        return m

    def enc_len(self):
        return len(self.salts) * 32 + (16 if self.proto.VERSION == 2 else 0)

    def decrypt(self, c, label, out):
        """Checks the ciphertext length and returns the 32/64-byte output."""
        if not c.check(label + ": hmac-secret output is a %d-byte ciphertext" % self.enc_len(),
                       isinstance(out, bytes) and len(out) == self.enc_len(),
                       "got %r" % (out if not isinstance(out, bytes) else "%d bytes" % len(out))):
            raise Failed(label)
        return self.proto.decrypt(self.shared, out)


def hmac_ga(s, label, rp_id, allow, salts, uv, proto=None, all_creds=False):
    """GA with hmac-secret; returns [(cred_id, plaintext output)]."""
    c = s.chk
    box = {}

    def exts():
        box["h"] = HmacInput(s, salts, proto)
        return {"hmac-secret": box["h"].ext()}
    try:
        if all_creds:
            resps, _ = xga_all(s, rp_id, allow, exts, uv)
        else:
            resps = [xga(s, rp_id, allow, exts, uv)[0]]
    except CtapError as e:
        c.fail(label, "getAssertion failed: %s" % e)
        raise Failed(label)
    out = []
    for i, r in enumerate(resps):
        lab = label if len(resps) == 1 else "%s #%d" % (label, i)
        c.check(lab + ": flag UV %s" % ("set" if uv else "clear"),
                bool(r.auth_data.flags & FLAG_UV) == bool(uv), "flags=0x%02x" % r.auth_data.flags)
        ext = ext_outputs(c, lab, r.auth_data)
        c.eq(lab + ": only the hmac-secret output", sorted(ext), ["hmac-secret"])
        if "hmac-secret" not in ext:
            raise Failed(lab)
        out.append((s.assertion_cred_id(r), box["h"].decrypt(c, lab, ext["hmac-secret"])))
    return out


def phase_ext_info(s, a):
    c = s.chk
    info = s.ctap.get_info()
    d = info.data
    vers = list(info.versions)
    c.check("versions include FIDO_2_0 and FIDO_2_1", {"FIDO_2_0", "FIDO_2_1"} <= set(vers), vers)
    c.check("versions include FIDO_2_1_PRE (credentialMgmtPreview is offered)",
            "FIDO_2_1_PRE" in vers and info.options.get("credentialMgmtPreview") is True,
            (vers, info.options.get("credentialMgmtPreview")))
    c.eq("extensions are exactly %s" % ", ".join(EXT_NAMES), sorted(info.extensions), EXT_NAMES)
    c.eq("extensions listed once each", len(info.extensions), len(set(info.extensions)))
    opts = info.options
    for k in ("largeBlobs", "authnrCfg", "setMinPINLength", "credMgmt", "pinUvAuthToken", "rk"):
        c.eq("option %s is true" % k, opts.get(k), True)
    want_auv = a.expect_always_uv == "true"
    c.eq("option alwaysUv is %s" % a.expect_always_uv, opts.get("alwaysUv"), want_auv)
    # CTAP 2.1 §6.4: if alwaysUv is true, makeCredUvNotRqd MUST be false.
    c.eq("option makeCredUvNotRqd is %s" % str(not want_auv).lower(),
         opts.get("makeCredUvNotRqd"), not want_auv)
    c.check("option ep absent (enterprise attestation not supported)", "ep" not in opts, opts)
    c.check("option uv absent (no built-in user verification)", "uv" not in opts, opts)
    c.eq("option clientPin is %s" % (a.expect_pin == "set"), opts.get("clientPin"),
         a.expect_pin == "set")
    c.eq("maxCredBlobLength (0x0F)", d.get(Info.KEY.MAX_CRED_BLOB_LENGTH), MAX_CRED_BLOB)
    c.eq("maxSerializedLargeBlobArray (0x0B)", d.get(Info.KEY.MAX_LARGE_BLOB), MAX_LARGE_BLOB)
    c.eq("maxRPIDsForSetMinPINLength (0x10)", d.get(Info.KEY.MAX_RPIDS_FOR_MIN_PIN),
         MAX_RPIDS_MIN_PIN)
    c.eq("minPINLength (0x0D)", d.get(Info.KEY.MIN_PIN_LENGTH), a.expect_min_pin)
    c.eq("forcePINChange (0x0C)", d.get(Info.KEY.FORCE_PIN_CHANGE), a.expect_force == "true")
    rem = d.get(Info.KEY.REMAINING_DISC_CREDS)
    c.check("remainingDiscoverableCredentials (0x14) is an unsigned integer",
            isinstance(rem, int) and rem >= 0, rem)
    c.check("maxMsgSize >= 1024", info.max_msg_size >= 1024, info.max_msg_size)
    c.check("maxSerializedLargeBlobArray >= 1024 (CTAP 2.1 minimum)",
            (d.get(Info.KEY.MAX_LARGE_BLOB) or 0) >= 1024, d.get(Info.KEY.MAX_LARGE_BLOB))
    if (a.expect_pin == "set" or want_auv) and not s.pin:
        return  # no token: cannot create a discoverable credential
    # remainingDiscoverableCredentials counts: -1 for a new discoverable
    # credential, unchanged when the same (rp, user) is overwritten.
    if isinstance(rem, int):
        rp = {"id": "info-remaining.example", "name": "Remaining"}
        u = user("remaining-%s" % os.urandom(4).hex())
        xmc(s, rp, u, rk=True)
        rem1 = s.ctap.get_info().data.get(Info.KEY.REMAINING_DISC_CREDS)
        c.eq("remainingDiscoverableCredentials decreases by 1 after a discoverable MC",
             rem1, rem - 1)
        xmc(s, rp, u, rk=True)
        c.eq("remainingDiscoverableCredentials unchanged when (rp, user) is overwritten",
             s.ctap.get_info().data.get(Info.KEY.REMAINING_DISC_CREDS), rem - 1)
        xmc(s, rp, user("remaining-nr"), rk=False)
        c.eq("remainingDiscoverableCredentials unchanged by a non-discoverable MC",
             s.ctap.get_info().data.get(Info.KEY.REMAINING_DISC_CREDS), rem - 1)


def phase_ext_hmac(s, a):
    c = s.chk
    v = s.proto.VERSION
    uv_ok = bool(s.pin)
    tag = "v%d%s" % (v, "" if uv_ok else "-nopin")
    rp_id = a.rp or "hmac-%s.example" % tag
    rp = {"id": rp_id, "name": "hmac-secret"}
    salt1, salt2 = sha256(b"salt one " + tag.encode()), sha256(b"salt two " + tag.encode())

    # -- creation ----------------------------------------------------------
    k1, _ = xmake(s, "MC rk hmac-secret=true", rp, user("hmac-1-" + tag), {"hmac-secret": True},
                  rk=True, want_ext={"hmac-secret": True})
    k2, _ = xmake(s, "MC rk hmac-secret=true (second credential)", rp, user("hmac-2-" + tag),
                  {"hmac-secret": True}, rk=True, want_ext={"hmac-secret": True})
    k3, _ = xmake(s, "MC non-rk hmac-secret=true", rp, user("hmac-3-" + tag),
                  {"hmac-secret": True}, want_ext={"hmac-secret": True})
    if v == 2 or not uv_ok:
        c.eq("python-fido2 HmacSecretExtension: hmacCreateSecret -> hmac-secret: true",
             HmacSecretExtension(s.ctap).process_create_input({"hmacCreateSecret": True}), True)

    # -- outputs are stable per credential and salt, and depend on UV --------
    modes = [False, True] if uv_ok else [False]
    res = {}
    for uv in modes:
        m = "UV" if uv else "no UV"
        o1 = hmac_ga(s, "GA hmac-secret one salt (%s)" % m, rp_id, [desc(k1.id)], [salt1], uv)
        o1b = hmac_ga(s, "GA hmac-secret one salt again (%s)" % m, rp_id, [desc(k1.id)],
                      [salt1], uv)
        c.eq("hmac-secret output1 is 32 bytes (%s)" % m, len(o1[0][1]), 32)
        c.eq("hmac-secret output stable for the same credential and salt (%s)" % m,
             o1b[0][1], o1[0][1])
        o12 = hmac_ga(s, "GA hmac-secret two salts (%s)" % m, rp_id, [desc(k1.id)],
                      [salt1, salt2], uv)
        c.eq("two salts: 64 bytes of output (%s)" % m, len(o12[0][1]), 64)
        c.eq("two salts: output1 equals the one-salt output (%s)" % m, o12[0][1][:32], o1[0][1])
        c.check("two salts: output2 differs from output1 (%s)" % m,
                o12[0][1][32:] != o12[0][1][:32])
        o21 = hmac_ga(s, "GA hmac-secret other credential (%s)" % m, rp_id, [desc(k2.id)],
                      [salt1], uv)
        c.check("different credentials give different outputs (%s)" % m, o21[0][1] != o1[0][1])
        o3 = hmac_ga(s, "GA hmac-secret non-discoverable credential (%s)" % m, rp_id,
                     [desc(k3.id)], [salt1], uv)
        c.check("non-discoverable credential has its own secret (%s)" % m,
                o3[0][1] not in (o1[0][1], o21[0][1]))
        # Discoverable: getNextAssertion carries the output for each credential,
        # encrypted under the shared secret of the first request.
        allres = hmac_ga(s, "GA hmac-secret discoverable + getNextAssertion (%s)" % m, rp_id,
                         None, [salt1, salt2], uv, all_creds=True)
        got = dict(allres)
        c.eq("discoverable hmac-secret: both resident credentials (%s)" % m, sorted(got),
             sorted([k1.id, k2.id]))
        c.eq("discoverable hmac-secret: output for credential 1 (%s)" % m, got.get(k1.id),
             o12[0][1])
        o22 = hmac_ga(s, "GA hmac-secret credential 2 two salts (%s)" % m, rp_id, [desc(k2.id)],
                      [salt1, salt2], uv)
        c.eq("discoverable hmac-secret: getNextAssertion output for credential 2 (%s)" % m,
             got.get(k2.id), o22[0][1])
        res[uv] = {"k1": o12[0][1].hex(), "k3": o3[0][1].hex()}
    if uv_ok:
        c.check("hmac-secret output differs with and without UV (credential 1)",
                res[True]["k1"] != res[False]["k1"])
        c.check("hmac-secret output differs with and without UV (non-discoverable)",
                res[True]["k3"] != res[False]["k3"])

    # Protocol 1 may omit pinUvAuthProtocol (key 4); it defaults to 1.
    if v == 1:
        def exts_nov():
            h = HmacInput(s, [salt1])
            box["h"] = h
            return {"hmac-secret": h.ext(omit=(4,))}
        box = {}
        r, _ = xga(s, rp_id, [desc(k1.id)], exts_nov, uv=False)
        ext = ext_outputs(c, "GA hmac-secret without pinUvAuthProtocol", r.auth_data)
        if c.check("GA hmac-secret without pinUvAuthProtocol (defaults to 1) succeeds",
                   "hmac-secret" in ext, ext):
            c.eq("GA hmac-secret without pinUvAuthProtocol: same output",
                 box["h"].decrypt(c, "no key 4", ext["hmac-secret"]), bytes.fromhex(
                     res[False]["k1"])[:32])

    # The other PIN protocol's key agreement gives the same secret.
    other = PinProtocolV1() if v == 2 else PinProtocolV2()
    oo = hmac_ga(s, "GA hmac-secret with the other PIN protocol (v%d)" % other.VERSION, rp_id,
                 [desc(k1.id)], [salt1, salt2], False, proto=other)
    c.eq("output independent of the PIN protocol used for transport", oo[0][1].hex(),
         res[False]["k1"])

    # -- hmac-secret-mc (CTAP 2.2): outputs at creation equal GA's -----------
    for uv in modes:
        m = "UV" if uv else "no UV"
        box = {}

        def exts_mc():
            box["h"] = HmacInput(s, [salt1, salt2])
            return {"hmac-secret": True, "hmac-secret-mc": box["h"].ext()}
        u = user("hmac-mc-%s-%s" % (m, tag))
        try:
            # (with a PIN set, a discoverable MC needs UV: non-rk without UV)
            att, cdh = xmc(s, rp, u, exts_mc, rk=uv or not uv_ok, uv=uv)
            c.ok("MC hmac-secret-mc (%s)" % m)
        except Exception as e:  # noqa: BLE001 - e.g. a CTAP 2.2 response key 0x06
            c.fail("MC hmac-secret-mc (%s)" % m, repr(e))
            continue
        ext = ext_outputs(c, "MC hmac-secret-mc (%s)" % m, att.auth_data)
        c.eq("MC hmac-secret-mc: outputs are hmac-secret and hmac-secret-mc (%s)" % m,
             sorted(ext), ["hmac-secret", "hmac-secret-mc"])
        c.eq("MC hmac-secret-mc: hmac-secret output true (%s)" % m, ext.get("hmac-secret"), True)
        c.check("MC hmac-secret-mc: no CTAP 2.2 response key 0x06 (%s)" % m,
                set(att.data) <= set(AttestationObject.KEY), sorted(att.data))
        if "hmac-secret-mc" not in ext:
            continue
        mc_out = box["h"].decrypt(c, "MC hmac-secret-mc (%s)" % m, ext["hmac-secret-mc"])
        cid = att.auth_data.credential_data.credential_id
        ga_out = hmac_ga(s, "GA after hmac-secret-mc (%s)" % m, rp_id, [desc(cid)],
                         [salt1, salt2], uv)
        c.eq("hmac-secret-mc output equals the GA output for the same salts (%s)" % m,
             mc_out, ga_out[0][1])
        if uv_ok:
            other_uv = hmac_ga(s, "GA after hmac-secret-mc, other UV state (%s)" % m, rp_id,
                               [desc(cid)], [salt1, salt2], not uv)
            c.check("hmac-secret-mc output differs from the other UV state (%s)" % m,
                    other_uv[0][1] != mc_out)
    box = {}
    c.expect_err("MC hmac-secret-mc with a wrong saltAuth -> PIN_AUTH_INVALID", 0x33, xmc, s, rp,
                 user("hmac-mc-bad-" + tag),
                 lambda: {"hmac-secret": True, "hmac-secret-mc": HmacInput(s, [salt1]).ext(
                     auth=os.urandom(16 if v == 1 else 32))}, rk=True)

    # -- Fido2Client (PRF path: hmacCreateSecret / hmacGetSecret) -------------
    if v == 2:
        fido2_client_hmac(s, rp_id, salt1, salt2)

    # -- error paths --------------------------------------------------------
    allow = [desc(k1.id)]

    def bad(label, code, fn_ext, options=None, uv=False):
        c.expect_err(label, code, xga, s, rp_id, allow, lambda: {"hmac-secret": fn_ext()},
                     uv, options)
    bad("GA hmac-secret with up=false -> UNSUPPORTED_OPTION", 0x2B,
        lambda: HmacInput(s, [salt1]).ext(), options={"up": False})
    bad("GA hmac-secret with a wrong saltAuth -> PIN_AUTH_INVALID", 0x33,
        lambda: HmacInput(s, [salt1]).ext(auth=os.urandom(16 if v == 1 else 32)))

    def wrong_key_auth():
        h = HmacInput(s, [salt1])
        return h.ext(auth=s.proto.authenticate(os.urandom(len(h.shared)), h.salt_enc))
    bad("GA hmac-secret with saltAuth under another key -> PIN_AUTH_INVALID", 0x33,
        wrong_key_auth)
    for n in (16, 48, 96):
        def salt_len(n=n):
            h = HmacInput(s, [os.urandom(n)])
            return h.ext()
        bad("GA hmac-secret with a %d-byte salt -> INVALID_PARAMETER" % n, 0x02, salt_len)
    for k, name in ((1, "keyAgreement"), (2, "saltEnc"), (3, "saltAuth")):
        bad("GA hmac-secret without %s -> MISSING_PARAMETER" % name, 0x14,
            lambda k=k: HmacInput(s, [salt1]).ext(omit=(k,)))
    bad("GA hmac-secret with pinUvAuthProtocol 3 -> INVALID_PARAMETER", 0x02,
        lambda: HmacInput(s, [salt1]).ext(proto=3))

    def off_curve():
        h = HmacInput(s, [salt1])
        ka = dict(h.ka)
        y = bytearray(ka[-3])
        y[-1] ^= 0x01
        ka[-3] = bytes(y)
        return h.ext(ka=ka)
    bad("GA hmac-secret with a keyAgreement point not on P-256 -> INVALID_PARAMETER", 0x02,
        off_curve)
    # The authenticator is still fine afterwards.
    hmac_ga(s, "GA hmac-secret after the error cases", rp_id, allow, [salt1], False)

    if a.state:
        save_state(a.state, rp_id, [k1, k3], {
            "salt1": salt1.hex(), "salt2": salt2.hex(), "uv": uv_ok,
            "out": {("uv" if k else "nouv"): val for k, val in res.items()}})


def fido2_client_hmac(s, rp_id, salt1, salt2):
    """Fido2Client (protocol 2) creates a credential with hmacCreateSecret and
    reads hmacGetSecret; the outputs must equal what Ctap2 gets with UV."""
    c = s.chk
    client = Fido2Client(s.dev, "https://" + rp_id)
    u = user("fido2client-hmac-%s" % os.urandom(3).hex())
    try:
        res = client.make_credential({
            "rp": {"id": rp_id, "name": "Fido2Client"}, "user": u, "challenge": os.urandom(32),
            "pubKeyCredParams": [ES256],
            "authenticatorSelection": {"requireResidentKey": True,
                                       "userVerification": "discouraged"},
            "extensions": {"hmacCreateSecret": True}}, pin=s.pin)
    except Exception as e:  # noqa: BLE001
        c.fail("Fido2Client makeCredential hmacCreateSecret", repr(e))
        return
    c.eq("Fido2Client hmacCreateSecret extension result", res.extension_results,
         {"hmacCreateSecret": True})
    cid = res.attestation_object.auth_data.credential_data.credential_id
    try:
        sel = client.get_assertion({
            "rpId": rp_id, "challenge": os.urandom(32),
            "allowCredentials": [{"type": "public-key", "id": cid}],
            "userVerification": "discouraged",
            "extensions": {"hmacGetSecret": {"salt1": salt1, "salt2": salt2}}}, pin=s.pin)
        r = sel.get_response(0)
    except Exception as e:  # noqa: BLE001
        c.fail("Fido2Client getAssertion hmacGetSecret", repr(e))
        return
    got = (r.extension_results or {}).get("hmacGetSecret", {})
    c.check("Fido2Client hmacGetSecret returns output1 and output2",
            len(got.get("output1", b"")) == 32 and len(got.get("output2", b"")) == 32, got)
    ref = hmac_ga(s, "Ctap2 GA for the Fido2Client credential", rp_id, [desc(cid)],
                  [salt1, salt2], bool(s.pin))
    c.eq("Fido2Client hmacGetSecret equals the raw Ctap2 output (same UV state)",
         got.get("output1", b"") + got.get("output2", b""), ref[0][1])


def phase_ext_hmac_persist(s, a):
    """After a restart, hmac-secret outputs for the --state credentials are
    unchanged (the secrets are stored, not regenerated)."""
    c = s.chk
    st = load_state(a.state)
    salts = [bytes.fromhex(st["salt1"]), bytes.fromhex(st["salt2"])]
    modes = [False, True] if st["uv"] and s.pin else [False]
    # k1 (discoverable) was recorded with two salts, k3 (non-discoverable) with one.
    for cred, key, ss in zip(st["creds"], ("k1", "k3"), (salts, salts[:1])):
        for uv in modes:
            m = "uv" if uv else "nouv"
            out = hmac_ga(s, "after restart GA hmac-secret %s (%s)" % (key, m), cred.rp_id,
                          [desc(cred.id)], ss, uv)
            c.eq("after restart hmac-secret output unchanged %s (%s)" % (key, m),
                 out[0][1].hex(), st["out"][m][key])


# -- credProtect --------------------------------------------------------------


def phase_ext_credprotect(s, a):
    c = s.chk
    v = s.proto.VERSION
    tag = "v%d" % v
    rp_id = a.rp or "credprotect-%s.example" % tag
    rp = {"id": rp_id, "name": "credProtect"}
    P = CredProtectExtension.POLICY
    cpx = CredProtectExtension(s.ctap)
    lvl = {1: cpx.process_create_input({"credentialProtectionPolicy": P.OPTIONAL}),
           2: cpx.process_create_input({"credentialProtectionPolicy": P.OPTIONAL_WITH_LIST}),
           3: cpx.process_create_input({"credentialProtectionPolicy": P.REQUIRED,
                                        "enforceCredentialProtectionPolicy": True})}
    c.eq("python-fido2 CredProtectExtension maps the policies to 1, 2, 3",
         [lvl[1], lvl[2], lvl[3]], [1, 2, 3])

    r0, _ = xmake(s, "MC rk without credProtect", rp, user("cp-r0-" + tag), None, rk=True,
                  want_ext={})
    r1, _ = xmake(s, "MC rk credProtect 1", rp, user("cp-r1-" + tag), {"credProtect": lvl[1]},
                  rk=True, want_ext={"credProtect": 1})
    r2, _ = xmake(s, "MC rk credProtect 2", rp, user("cp-r2-" + tag), {"credProtect": lvl[2]},
                  rk=True, want_ext={"credProtect": 2})
    r3, _ = xmake(s, "MC rk credProtect 3", rp, user("cp-r3-" + tag), {"credProtect": lvl[3]},
                  rk=True, want_ext={"credProtect": 3})
    n2, _ = xmake(s, "MC non-rk credProtect 2", rp, user("cp-n2-" + tag), {"credProtect": 2},
                  want_ext={"credProtect": 2})
    n3, _ = xmake(s, "MC non-rk credProtect 3", rp, user("cp-n3-" + tag), {"credProtect": 3},
                  want_ext={"credProtect": 3})
    n3b, _ = xmake(s, "MC non-rk credProtect 3 without UV", rp, user("cp-n3b-" + tag),
                   {"credProtect": 3}, uv=False, want_ext={"credProtect": 3})
    by_id = {k.id: k for k in (r0, r1, r2, r3, n2, n3, n3b)}

    def check_disc(label, uv, want):
        try:
            resps, cdh = xga_all(s, rp_id, None, None, uv)
        except CtapError as e:
            c.fail(label, str(e))
            return
        got = ids_of(s, resps)
        c.eq(label + ": credentials", sorted(got), sorted(k.id for k in want))
        c.eq(label + ": numberOfCredentials", resps[0].number_of_credentials,
             len(want) if len(want) > 1 else None)
        for i, r in enumerate(resps):
            k = by_id.get(s.assertion_cred_id(r))
            if k is not None:
                s.verify_assertion("%s #%d" % (label, i), r, cdh, rp_id, k, want_uv=uv)
        c.expect_err(label + ": getNextAssertion past the end -> NOT_ALLOWED", 0x30,
                     s.ctap.get_next_assertion)

    check_disc("discoverable GA without UV hides levels 2 and 3", False, [r0, r1])
    check_disc("discoverable GA with UV finds every level", True, [r0, r1, r2, r3])
    resps, _ = xga_all(s, rp_id, [], None, False)
    c.eq("empty allowList without UV is discoverable: hides levels 2 and 3",
         sorted(ids_of(s, resps)), sorted([r0.id, r1.id]))

    def ga_one(label, k, uv):
        try:
            r, cdh = xga(s, rp_id, [desc(k.id)], None, uv)
        except CtapError as e:
            c.fail(label, str(e))
            return
        c.eq(label + ": credential", s.assertion_cred_id(r), k.id)
        s.verify_assertion(label, r, cdh, rp_id, k, want_uv=uv)
    ga_one("allowList level 2 (rk) without UV", r2, False)
    ga_one("allowList level 2 (non-rk) without UV", n2, False)
    ga_one("allowList level 3 (rk) with UV", r3, True)
    ga_one("allowList level 3 (non-rk) with UV", n3, True)
    ga_one("allowList level 3 made without UV, asserted with UV", n3b, True)
    for k, what in ((r3, "rk"), (n3, "non-rk"), (n3b, "made without UV")):
        c.expect_err("allowList level 3 (%s) without UV -> NO_CREDENTIALS" % what, 0x2E,
                     xga, s, rp_id, [desc(k.id)], None, False)
    r, _ = xga(s, rp_id, [desc(r3.id), desc(n3.id), desc(r1.id)], None, False)
    c.eq("allowList [3, 3, 1] without UV picks the level-1 credential",
         s.assertion_cred_id(r), r1.id)
    c.expect_err("allowList level 3 without UV, up=false -> NO_CREDENTIALS", 0x2E,
                 xga, s, rp_id, [desc(n3.id)], None, False, {"up": False})

    # excludeList: level-3 credentials are invisible without UV.
    def mc_ex(label, ex, uv, code=None):
        if code is None:
            try:
                xmc(s, rp, user("cp-ex-%s" % os.urandom(3).hex()), exclude=[desc(ex.id)], uv=uv)
                c.ok(label)
            except CtapError as e:
                c.fail(label, str(e))
        else:
            c.expect_err(label, code, xmc, s, rp, user("cp-ex"), None, False, uv,
                         [desc(ex.id)])
    mc_ex("excludeList level 3 (rk) without UV is ignored", r3, False)
    mc_ex("excludeList level 3 (non-rk) without UV is ignored", n3, False)
    mc_ex("excludeList level 3 (rk) with UV -> CREDENTIAL_EXCLUDED", r3, True, 0x19)
    mc_ex("excludeList level 3 (non-rk) with UV -> CREDENTIAL_EXCLUDED", n3, True, 0x19)
    mc_ex("excludeList level 2 without UV -> CREDENTIAL_EXCLUDED", r2, False, 0x19)
    mc_ex("excludeList level 2 (non-rk) without UV -> CREDENTIAL_EXCLUDED", n2, False, 0x19)
    mc_ex("excludeList level 1 without UV -> CREDENTIAL_EXCLUDED", r1, False, 0x19)

    # An RP with only a level-3 credential: nothing without UV.
    rp3 = {"id": "only3." + rp_id, "name": "only level 3"}
    o3, _ = xmake(s, "MC rk credProtect 3 (only credential of its RP)", rp3,
                  user("cp-o3-" + tag), {"credProtect": 3}, rk=True, want_ext={"credProtect": 3})
    c.expect_err("discoverable GA without UV, only level 3 -> NO_CREDENTIALS", 0x2E,
                 xga, s, rp3["id"], None, None, False)
    r, _ = xga(s, rp3["id"], None, None, True)
    c.eq("discoverable GA with UV, only level 3 finds it", s.assertion_cred_id(r), o3.id)

    # credMgmt lists the level of each discoverable credential.
    cm = CredentialManagement(s.ctap, s.proto, s.token(PERM_CM))
    got = {r[CredentialManagement.RESULT.CREDENTIAL_ID]["id"]:
           r.get(CredentialManagement.RESULT.CRED_PROTECT)
           for r in cm.enumerate_creds(sha256(rp_id.encode()))}
    c.eq("credMgmt enumerates every resident credential", sorted(got),
         sorted([r0.id, r1.id, r2.id, r3.id]))
    for k, want in ((r1, 1), (r2, 2), (r3, 3)):
        c.eq("credMgmt credProtect of the level-%d credential" % want, got.get(k.id), want)
    c.check("credMgmt credProtect of the credential made without the extension is 1 (or absent)",
            got.get(r0.id) in (1, None), got.get(r0.id))

    # Invalid inputs.
    for val, code, what in ((0, 0x02, "0 -> INVALID_PARAMETER"),
                            (4, 0x02, "4 -> INVALID_PARAMETER"),
                            (255, 0x02, "255 -> INVALID_PARAMETER"),
                            ("3", 0x11, "as text -> CBOR_UNEXPECTED_TYPE"),
                            (True, 0x11, "as bool -> CBOR_UNEXPECTED_TYPE"),
                            (-1, 0x11, "negative -> CBOR_UNEXPECTED_TYPE")):
        c.expect_err("MC credProtect %s" % what, code, xmc, s, rp, user("cp-bad"),
                     {"credProtect": val})

    # Fido2Client with credentialProtectionPolicy (protocol 2 client).
    if v == 2:
        client = Fido2Client(s.dev, "https://" + rp_id)
        try:
            res = client.make_credential({
                "rp": rp, "user": user("cp-fido2client"), "challenge": os.urandom(32),
                "pubKeyCredParams": [ES256],
                "authenticatorSelection": {"requireResidentKey": True,
                                           "userVerification": "discouraged"},
                "extensions": {"credentialProtectionPolicy": P.REQUIRED,
                               "enforceCredentialProtectionPolicy": True}}, pin=s.pin)
            c.eq("Fido2Client credentialProtectionPolicy=userVerificationRequired -> level 3",
                 res.attestation_object.auth_data.extensions, {"credProtect": 3})
        except Exception as e:  # noqa: BLE001
            c.fail("Fido2Client credentialProtectionPolicy", repr(e))


# -- credBlob -----------------------------------------------------------------


def phase_ext_credblob(s, a):
    c = s.chk
    v = s.proto.VERSION if s.proto else 0
    tag = "v%d%s" % (v, "" if s.pin else "-nopin")
    rp_id = a.rp or "credblob-%s.example" % tag
    rp = {"id": rp_id, "name": "credBlob"}
    cbx = CredBlobExtension(s.ctap)
    blob32 = sha256(b"blob " + tag.encode())
    c.eq("python-fido2 CredBlobExtension passes a 32-byte blob",
         cbx.process_create_input({"credBlob": blob32}), blob32)
    c.check("python-fido2 CredBlobExtension drops a 33-byte blob (maxCredBlobLength 32)",
            cbx.process_create_input({"credBlob": blob32 + b"x"}) is None)
    c.eq("python-fido2 CredBlobExtension getCredBlob -> true",
         cbx.process_get_input({"getCredBlob": True}), True)

    kb, _ = xmake(s, "MC rk credBlob 32 bytes", rp, user("cb-32-" + tag), {"credBlob": blob32},
                  rk=True, want_ext={"credBlob": True})
    small = b"\x00\x01small"
    ks, _ = xmake(s, "MC rk credBlob 7 bytes", rp, user("cb-7-" + tag), {"credBlob": small},
                  rk=True, want_ext={"credBlob": True})
    ke, _ = xmake(s, "MC rk credBlob empty", rp, user("cb-0-" + tag), {"credBlob": b""},
                  rk=True, want_ext={"credBlob": True})
    kl, _ = xmake(s, "MC rk credBlob 33 bytes -> output false", rp, user("cb-33-" + tag),
                  {"credBlob": blob32 + b"!"}, rk=True, want_ext={"credBlob": False})
    kn, _ = xmake(s, "MC rk without credBlob", rp, user("cb-none-" + tag), None, rk=True,
                  want_ext={})
    want = {kb.id: blob32, ks.id: small, ke.id: b"", kl.id: b"", kn.id: b""}
    names = {kb.id: "32-byte blob", ks.id: "7-byte blob", ke.id: "empty blob",
             kl.id: "rejected 33-byte blob", kn.id: "no blob"}
    modes = [False, True] if s.pin else [False]
    for uv in modes:
        m = "UV" if uv else "no UV"
        for k in (kb, ks, ke, kl, kn):
            r, cdh = xga(s, rp_id, [desc(k.id)], {"credBlob": True}, uv)
            ext = ext_outputs(c, "GA credBlob %s (%s)" % (names[k.id], m), r.auth_data)
            c.eq("GA credBlob=true returns the %s (%s)" % (names[k.id], m), ext,
                 {"credBlob": want[k.id]})
            s.verify_assertion("GA credBlob %s (%s)" % (names[k.id], m), r, cdh, rp_id, k,
                               want_uv=uv)
        resps, _ = xga_all(s, rp_id, None, {"credBlob": True}, uv)
        c.eq("discoverable GA credBlob: every credential (%s)" % m, sorted(ids_of(s, resps)),
             sorted(want))
        for r in resps:
            cid = s.assertion_cred_id(r)
            c.eq("discoverable GA credBlob: %s (%s)" % (names.get(cid, "?"), m),
                 (r.auth_data.extensions or {}).get("credBlob"), want.get(cid))
    r, _ = xga(s, rp_id, [desc(kb.id)], None)
    c.check("GA without credBlob input has no credBlob output (outputs subset of inputs)",
            "credBlob" not in (r.auth_data.extensions or {}), r.auth_data.extensions)
    r, _ = xga(s, rp_id, [desc(kb.id)], {"credBlob": False})
    c.check("GA credBlob=false has no credBlob output",
            "credBlob" not in (r.auth_data.extensions or {}), r.auth_data.extensions)

    # Non-discoverable: whatever MC reports must be what GA returns.
    att, _ = xmc(s, rp, user("cb-nr-" + tag), {"credBlob": small})
    stored = (att.auth_data.extensions or {}).get("credBlob")
    c.check("MC non-rk credBlob output is a boolean", stored in (True, False), stored)
    cid = att.auth_data.credential_data.credential_id
    r, _ = xga(s, rp_id, [desc(cid)], {"credBlob": True})
    c.eq("GA credBlob of a non-rk credential agrees with its MC output",
         (r.auth_data.extensions or {}).get("credBlob"), small if stored else b"")

    # Fido2Client: credBlob / getCredBlob.
    if v == 2 or not s.pin:
        client = Fido2Client(s.dev, "https://" + rp_id)
        try:
            res = client.make_credential({
                "rp": rp, "user": user("cb-fido2client-" + tag), "challenge": os.urandom(32),
                "pubKeyCredParams": [ES256],
                "authenticatorSelection": {"requireResidentKey": True,
                                           "userVerification": "discouraged"},
                "extensions": {"credBlob": small}}, pin=s.pin)
            ad = res.attestation_object.auth_data
            c.eq("Fido2Client credBlob: MC output", ad.extensions, {"credBlob": True})
            sel = client.get_assertion({
                "rpId": rp_id, "challenge": os.urandom(32),
                "allowCredentials": [{"type": "public-key",
                                      "id": ad.credential_data.credential_id}],
                "userVerification": "discouraged", "extensions": {"getCredBlob": True}},
                pin=s.pin)
            c.eq("Fido2Client getCredBlob: GA output",
                 sel.get_assertions()[0].auth_data.extensions, {"credBlob": small})
        except Exception as e:  # noqa: BLE001
            c.fail("Fido2Client credBlob/getCredBlob", repr(e))


# -- largeBlobKey + authenticatorLargeBlobs -----------------------------------


def lb_raw(s, get=None, set_=None, offset=None, length=None, param=None, proto=None,
           extra=None):
    req = {}
    for k, val in ((1, get), (2, set_), (3, offset), (4, length), (5, param), (6, proto)):
        if val is not None:
            req[k] = val
    req.update(extra or {})
    return raw_cbor(s, CMD_LB, req)


def lb_param(s, tok, offset, data):
    if tok is None:
        return {}
    msg = b"\xff" * 32 + b"\x0c\x00" + struct.pack("<I", offset) + sha256(data)
    return {"param": s.proto.authenticate(tok, msg), "proto": s.proto.VERSION}


def lb_set(s, tok, offset, data, length=None):
    return lb_raw(s, set_=data, offset=offset, length=length, **lb_param(s, tok, offset, data))


def lb_read(s, max_frag):
    """Reads the whole serialized array with raw get requests."""
    buf, off = b"", 0
    while True:
        st, m = lb_raw(s, get=max_frag, offset=off)
        if st != 0:
            raise CtapError(st)
        frag = m[1]
        buf += frag
        if len(frag) < max_frag:
            return buf
        off += len(frag)


def lb_serialize(items):
    data = cbor.encode(items)
    return data + sha256(data)[:16]


def phase_ext_largeblob(s, a):
    c = s.chk
    v = s.proto.VERSION if s.proto else 0
    tag = "v%d%s" % (v, "" if s.pin else "-nopin")
    rp_id = a.rp or "largeblob-%s.example" % tag
    rp = {"id": rp_id, "name": "largeBlob"}
    info = s.ctap.get_info()
    max_frag = info.max_msg_size - 64
    c.eq("LargeBlobKeyExtension largeBlobKey -> true",
         LargeBlobKeyExtension(s.ctap).process_create_input({"largeBlobKey": True}), True)

    # -- largeBlobKey ------------------------------------------------------
    def mk(label, usr, rk=True, exts=None):
        try:
            att, cdh = xmc(s, rp, usr, exts if exts is not None else {"largeBlobKey": True},
                           rk=rk)
        except CtapError as e:
            c.fail(label, str(e))
            raise Failed(label)
        c.ok(label)
        c.check(label + ": no largeBlobKey in the authData extensions",
                "largeBlobKey" not in (att.auth_data.extensions or {}), att.auth_data.extensions)
        c.check(label + ": response keys within 0x01-0x05", set(att.data) <= MC_KEYS,
                sorted(att.data))
        return att
    att1 = mk("MC rk largeBlobKey=true", user("lb-1-" + tag))
    key1 = att1.large_blob_key
    c.check("MC rk largeBlobKey: response key 0x05 holds 32 bytes",
            isinstance(key1, bytes) and len(key1) == 32, key1)
    cid1 = att1.auth_data.credential_data.credential_id
    att2 = mk("MC rk largeBlobKey=true (second credential)", user("lb-2-" + tag))
    key2 = att2.large_blob_key
    cid2 = att2.auth_data.credential_data.credential_id
    c.check("two credentials have different largeBlobKeys", key1 != key2)
    att3 = mk("MC non-rk largeBlobKey=true", user("lb-3-" + tag), rk=False)
    c.check("MC non-rk largeBlobKey=true: ignored, no key 0x05", att3.large_blob_key is None,
            att3.large_blob_key)
    att4 = mk("MC rk without largeBlobKey", user("lb-4-" + tag), exts={})
    c.check("MC rk without largeBlobKey: no key 0x05", att4.large_blob_key is None)
    if not key1 or not key2:
        raise Failed("largeBlobKey missing")

    modes = [False, True] if s.pin else [False]
    for uv in modes:
        m = "UV" if uv else "no UV"
        r, _ = xga(s, rp_id, [desc(cid1)], {"largeBlobKey": True}, uv)
        c.eq("GA largeBlobKey=true: key 0x07 equals the MC key (%s)" % m, r.large_blob_key, key1)
        c.check("GA largeBlobKey: no largeBlobKey authData output (%s)" % m,
                "largeBlobKey" not in (r.auth_data.extensions or {}), r.auth_data.extensions)
        resps, _ = xga_all(s, rp_id, None, {"largeBlobKey": True}, uv)
        got = {s.assertion_cred_id(x): x.large_blob_key for x in resps}
        c.eq("discoverable GA largeBlobKey: key per credential (%s)" % m,
             (got.get(cid1), got.get(cid2)), (key1, key2))
    r, _ = xga(s, rp_id, [desc(cid1)])
    c.check("GA without largeBlobKey: no key 0x07", r.large_blob_key is None)
    c.expect_err("MC largeBlobKey=false -> INVALID_OPTION", 0x2C, xmc, s, rp,
                 user("lb-false"), {"largeBlobKey": False}, True)
    c.expect_err("GA largeBlobKey=false -> INVALID_OPTION", 0x2C, xga, s, rp_id,
                 [desc(cid1)], {"largeBlobKey": False})
    if s.pin:
        cm = CredentialManagement(s.ctap, s.proto, s.token(PERM_CM))
        got = {x[CredentialManagement.RESULT.CREDENTIAL_ID]["id"]:
               x.get(CredentialManagement.RESULT.LARGE_BLOB_KEY)
               for x in cm.enumerate_creds(sha256(rp_id.encode()))}
        c.eq("credMgmt enumerateCredentials largeBlobKey (0x0B)", (got.get(cid1), got.get(cid2)),
             (key1, key2))

    # -- LargeBlobs class --------------------------------------------------
    tok = s.token(PERM_LBW) if s.pin else None
    lb = LargeBlobs(s.ctap, s.proto if tok else None, tok)
    if a.fresh:
        st, m = lb_raw(s, get=max_frag, offset=0)
        c.eq("initial serialized large-blob array is the 17-byte empty array",
             m and m.get(1), EMPTY_LB_ARRAY)
        c.eq("LargeBlobs.read_blob_array on a fresh authenticator", lb.read_blob_array(), [])
    before = lb.read_blob_array()
    data1 = (b"certificate for credential 1 " + tag.encode()) * 20
    data2 = os.urandom(600)
    try:
        lb.put_blob(key1, data1)
        c.ok("LargeBlobs.put_blob credential 1")
        lb.put_blob(key2, data2)
        c.ok("LargeBlobs.put_blob credential 2")
    except CtapError as e:
        c.fail("LargeBlobs.put_blob", str(e))
        raise Failed("put_blob")
    c.eq("LargeBlobs.get_blob credential 1", lb.get_blob(key1), data1)
    c.eq("LargeBlobs.get_blob credential 2", lb.get_blob(key2), data2)
    c.check("LargeBlobs.get_blob with an unknown key -> None", lb.get_blob(os.urandom(32)) is None)
    c.eq("array grew by two entries", len(lb.read_blob_array()), len(before) + 2)
    data1b = b"replacement " + tag.encode()
    lb.put_blob(key1, data1b)
    c.eq("LargeBlobs.put_blob replaces credential 1's entry", lb.get_blob(key1), data1b)
    c.eq("replacing keeps the entry count", len(lb.read_blob_array()), len(before) + 2)
    lb.delete_blob(key2)
    c.check("LargeBlobs.delete_blob credential 2", lb.get_blob(key2) is None)
    c.eq("credential 1's entry survives the delete", lb.get_blob(key1), data1b)
    raw_arr = lb_read(s, max_frag)
    c.eq("raw read: serialized array carries LEFT(SHA-256, 16)", raw_arr[-16:],
         sha256(raw_arr[:-16])[:16])

    # -- authorisation -------------------------------------------------------
    small = lb_serialize([])
    if s.pin:
        st, _ = lb_raw(s, set_=small, offset=0, length=len(small))
        c.expect_status("set without pinUvAuthParam while a PIN is set -> PUAT_REQUIRED",
                        0x36, st)
        st, _ = lb_raw(s, set_=small, offset=0, length=len(small),
                       param=os.urandom(16 if v == 1 else 32), proto=v)
        c.expect_status("set with a wrong pinUvAuthParam -> PIN_AUTH_INVALID", 0x33, st)
        nolbw = s.token(PERM_MC | PERM_GA, rp_id)
        st, _ = lb_set(s, nolbw, 0, small, len(small))
        c.expect_status("set with a token lacking lbw -> PIN_AUTH_INVALID", 0x33, st)
        tok = s.token(PERM_LBW)  # (the request above invalidated the previous token)
        p = lb_param(s, tok, 0, small)
        st, _ = lb_raw(s, set_=small, offset=0, length=len(small), param=p["param"])
        c.expect_status("set with pinUvAuthParam but no pinUvAuthProtocol -> MISSING_PARAMETER",
                        0x14, st)
        st, _ = lb_raw(s, set_=small, offset=0, length=len(small), param=p["param"], proto=3)
        c.expect_status("set with pinUvAuthProtocol 3 -> INVALID_PARAMETER", 0x02, st)
        st, _ = lb_set(s, tok, 0, small, len(small))
        c.expect_status("set with a valid lbw token succeeds (writes the empty array)", 0x00, st)
        # A token with mc|ga|lbw keeps lbw after a makeCredential (permissions
        # other than lbw are cleared after use, CTAP 2.1 §6.1.2 step 14).
        mixed = s.token(PERM_MC | PERM_GA | PERM_LBW, rp_id)
        cdh = new_cdh()
        try:
            s.ctap.make_credential(cdh, rp, user("lb-mixed-" + tag), [ES256],
                                   extensions={"largeBlobKey": True}, options={"rk": True},
                                   pin_uv_param=s.proto.authenticate(mixed, cdh),
                                   pin_uv_protocol=v)
            st, _ = lb_set(s, mixed, 0, small, len(small))
            c.expect_status("a mc|ga|lbw token still writes large blobs after its MC", 0x00, st)
        except CtapError as e:
            c.fail("MC with a mc|ga|lbw token", str(e))
        tok = s.token(PERM_LBW)
        lb = LargeBlobs(s.ctap, s.proto, tok)
        lb.write_blob_array(before + [])  # restore the entries of earlier runs
        lb.put_blob(key1, data1b)

    # -- get/set parameter rules (CTAP 2.1 §6.10.2) --------------------------
    st, _ = lb_raw(s, offset=0)
    c.expect_status("neither get nor set -> INVALID_PARAMETER", 0x02, st)
    st, _ = lb_raw(s, get=10, set_=small, offset=0, length=len(small))
    c.expect_status("both get and set -> INVALID_PARAMETER", 0x02, st)
    st, _ = lb_raw(s, get=10)
    c.expect_status("get without offset -> INVALID_PARAMETER", 0x02, st)
    st, _ = lb_raw(s, get=10, offset=0, length=10)
    c.expect_status("get with length -> INVALID_PARAMETER", 0x02, st)
    st, _ = lb_raw(s, get=10, offset=0, param=os.urandom(32), proto=2)
    c.expect_status("get with pinUvAuthParam -> INVALID_PARAMETER", 0x02, st)
    st, _ = lb_raw(s, get=10, offset=0, proto=2)
    c.expect_status("get with pinUvAuthProtocol -> INVALID_PARAMETER", 0x02, st)
    st, _ = lb_raw(s, get=max_frag + 1, offset=0)
    c.expect_status("get more than maxFragmentLength (%d) -> INVALID_LENGTH" % max_frag, 0x03, st)
    cur = lb_read(s, max_frag)
    st, m = lb_raw(s, get=max_frag, offset=len(cur))
    c.check("get at offset == array length returns an empty string",
            st == 0 and m.get(1) == b"", "status 0x%02x %r" % (st, m))
    st, _ = lb_raw(s, get=1, offset=len(cur) + 1)
    c.expect_status("get beyond the array -> INVALID_PARAMETER", 0x02, st)
    st, m = lb_raw(s, get=5, offset=3)
    c.check("get 5 bytes at offset 3 returns exactly those bytes",
            st == 0 and m.get(1) == cur[3:8], "status 0x%02x %r" % (st, m))

    st, _ = lb_raw(s, set_=small, offset=0, **lb_param(s, tok, 0, small))
    c.expect_status("set at offset 0 without length -> INVALID_PARAMETER", 0x02, st)
    st, _ = lb_set(s, tok, 0, small, MAX_LARGE_BLOB + 1)
    c.expect_status("set length %d -> LARGE_BLOB_STORAGE_FULL" % (MAX_LARGE_BLOB + 1), 0x18, st)
    st, _ = lb_set(s, tok, 0, small[:16], 16)
    c.expect_status("set length 16 (< 17) -> INVALID_PARAMETER", 0x02, st)
    st, _ = lb_set(s, tok, 0, os.urandom(max_frag + 1), max_frag + 1)
    c.expect_status("set fragment longer than maxFragmentLength -> INVALID_LENGTH", 0x03, st)
    st, _ = lb_set(s, tok, 5, small[:5], 40)
    c.expect_status("set at offset > 0 with length -> INVALID_PARAMETER", 0x02, st)
    st, _ = lb_set(s, tok, 3, small[:5])
    c.expect_status("set at an unexpected offset (no write in progress) -> INVALID_SEQ", 0x04, st)

    # Bad integrity: refused, old array kept.
    cur = lb_read(s, max_frag)
    bad = cbor.encode([b"x" * 20]) + b"\x00" * 16
    st, _ = lb_set(s, tok, 0, bad, len(bad))
    c.expect_status("set with a wrong truncated hash -> INTEGRITY_FAILURE", 0x3D, st)
    c.eq("the array is unchanged after INTEGRITY_FAILURE", lb_read(s, max_frag), cur)

    # Overshoot: offset + len(set) > length.
    arr = lb_serialize([b"y" * 60])
    st, _ = lb_set(s, tok, 0, arr[:40], len(arr) - 10)
    c.expect_status("first fragment of a write", 0x00, st)
    st, _ = lb_set(s, tok, 40, arr[40:])
    c.expect_status("fragment beyond the announced length -> INVALID_PARAMETER", 0x02, st)
    c.eq("the array is unchanged after the refused write", lb_read(s, max_frag), cur)

    # Multi-fragment write of exactly maxSerializedLargeBlobArray bytes, with
    # an out-of-sequence fragment in the middle; atomic until the last one.
    pad = MAX_LARGE_BLOB - 16 - 1 - 3  # array(1) + bstr header (3) + pad + hash
    big = lb_serialize([os.urandom(pad)])
    c.eq("test array is exactly %d bytes" % MAX_LARGE_BLOB, len(big), MAX_LARGE_BLOB)
    frag = 3000
    ok = True
    for off in range(0, len(big), frag):
        piece = big[off:off + frag]
        if off == frag:
            st, _ = lb_set(s, tok, off + 1, piece)
            c.expect_status("fragment at a wrong offset mid-write -> INVALID_SEQ", 0x04, st)
            c.eq("a partial write is invisible to readers", lb_read(s, max_frag), cur)
        st, _ = lb_set(s, tok, off, piece, len(big) if off == 0 else None)
        ok &= c.expect_status("write %d bytes at offset %d" % (len(piece), off), 0x00, st)
    if ok:
        c.eq("read back the %d-byte array (two get fragments)" % MAX_LARGE_BLOB,
             lb_read(s, max_frag), big)
    # Restore a small array with the python-fido2 class.
    lb = LargeBlobs(s.ctap, s.proto if tok else None, s.token(PERM_LBW) if s.pin else None)
    lb.write_blob_array(before)
    lb.put_blob(key1, data1b)
    c.eq("restored array (LargeBlobs.write_blob_array) keeps credential 1's blob",
         lb.get_blob(key1), data1b)
    if a.state:
        with open(a.state, "w") as f:
            json.dump({"rp": rp_id, "key": key1.hex(), "cred": cid1.hex(),
                       "data": data1b.decode()}, f)


# -- authenticatorConfig + minPinLength ---------------------------------------


def cfg_raw(s, sub, params=None, tok=None, proto=None, param=None, omit_proto=False):
    """Raw authenticatorConfig; tok computes a valid pinUvAuthParam."""
    req = {}
    if sub is not None:
        req[1] = sub
    if params is not None:
        req[2] = params
    if tok is not None:
        msg = b"\xff" * 32 + b"\x0d" + bytes([sub if sub is not None else 0]) + (
            cbor.encode(params) if params is not None else b"")
        param = s.proto.authenticate(tok, msg)
        proto = proto or s.proto.VERSION
    if param is not None:
        req[4] = param
    if proto is not None and not omit_proto:
        req[3] = proto
    return raw_cbor(s, CMD_CFG, req)[0]


def info_opt(s, k):
    return s.ctap.get_info().options.get(k)


def info_key(s, k):
    return s.ctap.get_info().data.get(k)


def phase_ext_config_nopin(s, a):
    """authenticatorConfig before any PIN is set: no pinUvAuthParam needed
    while alwaysUv is off. Ends with minPINLength 5 and alwaysUv ON (a PIN
    must then be set and used to switch it off again)."""
    c = s.chk
    rp = {"id": "config-nopin.example", "name": "Config"}
    c.eq("clientPin not set", info_opt(s, "clientPin"), False)
    c.eq("alwaysUv off", info_opt(s, "alwaysUv"), False)
    cfg = Config(s.ctap)
    k, _ = xmake(s, "MC before alwaysUv", rp, user("cfg-nopin"), None, uv=False, want_ext={})
    c.expect_status("missing subCommand -> MISSING_PARAMETER", 0x14, cfg_raw(s, None))
    c.expect_status("unknown subCommand 0x42 -> INVALID_SUBCOMMAND", 0x3E, cfg_raw(s, 0x42))
    c.expect_status("enableEnterpriseAttestation (unsupported) -> INVALID_PARAMETER", 0x02,
                    cfg_raw(s, CFG_EA))
    c.expect_status("setMinPINLength forceChangePin without a PIN -> PIN_NOT_SET", 0x35,
                    cfg_raw(s, CFG_MIN_PIN, {3: True}))

    m0 = info_key(s, Info.KEY.MIN_PIN_LENGTH)
    c.eq("default minPINLength is 4", m0, 4)
    cfg.set_min_pin_length(min_pin_length=5)
    c.ok("Config.set_min_pin_length(5) without a PIN")
    c.eq("minPINLength 5", info_key(s, Info.KEY.MIN_PIN_LENGTH), 5)
    c.expect_err("setMinPINLength 4 (decrease) -> PIN_POLICY_VIOLATION", 0x37,
                 cfg.set_min_pin_length, 4)
    c.eq("forcePINChange still false (no PIN)", info_key(s, Info.KEY.FORCE_PIN_CHANGE), False)
    c.expect_err("setPIN with 4 characters under minPINLength 5 -> PIN_POLICY_VIOLATION", 0x37,
                 _raw_set_pin, s, b"1234".ljust(64, b"\0"))
    c.eq("clientPin still not set", info_opt(s, "clientPin"), False)

    cfg.toggle_always_uv()
    c.ok("Config.toggle_always_uv without a PIN (no pinUvAuthParam needed)")
    c.eq("alwaysUv true after toggle", info_opt(s, "alwaysUv"), True)
    c.eq("makeCredUvNotRqd false while alwaysUv", info_opt(s, "makeCredUvNotRqd"), False)
    c.expect_err("alwaysUv, no PIN: MC without UV -> PUAT_REQUIRED", 0x36, xmc, s, rp,
                 user("cfg-auv"), None, False, False)
    c.expect_err("alwaysUv, no PIN: GA without UV -> PUAT_REQUIRED", 0x36, xga, s, rp["id"],
                 [desc(k.id)], None, False)
    small = lb_serialize([])
    st, _ = lb_raw(s, set_=small, offset=0, length=len(small))
    c.expect_status("alwaysUv, no PIN: large-blob set without pinUvAuthParam -> PUAT_REQUIRED",
                    0x36, st)
    c.expect_status("alwaysUv, no PIN: setMinPINLength without pinUvAuthParam -> PUAT_REQUIRED",
                    0x36, cfg_raw(s, CFG_MIN_PIN, {1: 6}))
    c.eq("alwaysUv still on", info_opt(s, "alwaysUv"), True)


def phase_ext_config(s, a):
    """authenticatorConfig with a PIN (--pin, 6 characters) for one PIN
    protocol; leaves the PIN at --new-pin (8 characters or more)."""
    c = s.chk
    v = s.proto.VERSION
    new_pin = a.new_pin
    if not new_pin or len(new_pin) < 8 or len(s.pin) != 6:
        c.fail("arguments", "ext-config needs --pin with 6 and --new-pin with >= 8 characters")
        return
    rp_id = "config-v%d.example" % v
    rp = {"id": rp_id, "name": "Config"}
    if info_opt(s, "alwaysUv"):
        # Left on by ext-config-nopin: switching it off needs the PIN now.
        c.expect_status("alwaysUv on, PIN set: toggleAlwaysUv without pinUvAuthParam -> "
                        "PUAT_REQUIRED", 0x36, cfg_raw(s, CFG_ALWAYS_UV))
        Config(s.ctap, s.proto, s.token(PERM_ACFG)).toggle_always_uv()
        c.eq("alwaysUv switched off with an acfg token", info_opt(s, "alwaysUv"), False)
    k, _ = xmake(s, "MC with PIN", rp, user("cfg-k"), None, uv=True, want_ext={})

    # -- authorisation ---------------------------------------------------
    c.expect_status("config without pinUvAuthParam while a PIN is set -> PUAT_REQUIRED", 0x36,
                    cfg_raw(s, CFG_ALWAYS_UV))
    c.expect_status("config with a wrong pinUvAuthParam -> PIN_AUTH_INVALID", 0x33,
                    cfg_raw(s, CFG_ALWAYS_UV, proto=v, param=os.urandom(16 if v == 1 else 32)))
    c.expect_status("config with a token lacking acfg -> PIN_AUTH_INVALID", 0x33,
                    cfg_raw(s, CFG_ALWAYS_UV, tok=s.token(PERM_MC | PERM_GA, rp_id)))
    tok = s.token(PERM_ACFG)
    c.expect_status("config with pinUvAuthParam but no pinUvAuthProtocol -> MISSING_PARAMETER",
                    0x14, cfg_raw(s, CFG_ALWAYS_UV, tok=tok, omit_proto=True))
    c.expect_status("config with pinUvAuthProtocol 3 -> INVALID_PARAMETER", 0x02,
                    cfg_raw(s, CFG_ALWAYS_UV, tok=tok, proto=3))
    c.expect_status("unknown subCommand 0x42 (authenticated) -> INVALID_SUBCOMMAND", 0x3E,
                    cfg_raw(s, 0x42, tok=tok))
    c.expect_status("enableEnterpriseAttestation (authenticated) -> INVALID_PARAMETER", 0x02,
                    cfg_raw(s, CFG_EA, tok=tok))
    c.expect_status("setMinPINLength newMinPINLength as text -> CBOR_UNEXPECTED_TYPE", 0x11,
                    cfg_raw(s, CFG_MIN_PIN, {1: "8"}, tok=tok))
    c.expect_status("setMinPINLength minPinLengthRPIDs as text -> CBOR_UNEXPECTED_TYPE", 0x11,
                    cfg_raw(s, CFG_MIN_PIN, {2: "a.example"}, tok=tok))
    c.expect_status("setMinPINLength pinUvAuthParam over other params -> PIN_AUTH_INVALID",
                    0x33, raw_cbor(s, CMD_CFG, {1: CFG_MIN_PIN, 2: {1: 6}, 3: v,
                                                4: s.proto.authenticate(tok, b"\xff" * 32 +
                                                                        b"\x0d\x03" +
                                                                        cbor.encode({1: 7}))})[0])

    # -- toggleAlwaysUv --------------------------------------------------
    r, _ = xga(s, rp_id, [desc(k.id)], None, False)
    c.ok("GA without UV allowed before alwaysUv")
    # (Every token request invalidates the previous token: get a new one.)
    cfg = Config(s.ctap, s.proto, s.token(PERM_ACFG))
    cfg.toggle_always_uv()
    c.ok("Config.toggle_always_uv (acfg token)")
    c.eq("alwaysUv true", info_opt(s, "alwaysUv"), True)
    c.eq("makeCredUvNotRqd false while alwaysUv", info_opt(s, "makeCredUvNotRqd"), False)
    c.expect_err("alwaysUv: non-rk MC without pinUvAuthParam -> PUAT_REQUIRED", 0x36, xmc, s,
                 rp, user("cfg-auv"), None, False, False)
    c.expect_err("alwaysUv: GA without pinUvAuthParam -> PUAT_REQUIRED", 0x36, xga, s, rp_id,
                 [desc(k.id)], None, False)
    k2, _ = xmake(s, "alwaysUv: MC with pinUvAuthParam", rp, user("cfg-auv-ok"), None, uv=True,
                  want_ext={})
    r, cdh = xga(s, rp_id, [desc(k2.id)], None, True)
    s.verify_assertion("alwaysUv: GA with pinUvAuthParam", r, cdh, rp_id, k2, want_uv=True)
    c.expect_status("alwaysUv: config without pinUvAuthParam -> PUAT_REQUIRED", 0x36,
                    cfg_raw(s, CFG_ALWAYS_UV))
    if a.leave_always_uv:
        c.ok("leaving alwaysUv on (--leave-always-uv)")
    else:
        Config(s.ctap, s.proto, s.token(PERM_ACFG)).toggle_always_uv()
        c.eq("alwaysUv false after the second toggle", info_opt(s, "alwaysUv"), False)
        c.eq("makeCredUvNotRqd true again", info_opt(s, "makeCredUvNotRqd"), True)
        xga(s, rp_id, [desc(k.id)], None, False)
        c.ok("GA without UV allowed again")

    # -- setMinPINLength -------------------------------------------------
    cfg = Config(s.ctap, s.proto, s.token(PERM_ACFG))
    m0 = info_key(s, Info.KEY.MIN_PIN_LENGTH)
    cfg.set_min_pin_length(min_pin_length=m0)
    c.ok("setMinPINLength to the current value (%d) is allowed" % m0)
    c.expect_err("setMinPINLength %d (decrease) -> PIN_POLICY_VIOLATION" % (m0 - 1), 0x37,
                 cfg.set_min_pin_length, m0 - 1)
    cfg.set_min_pin_length(min_pin_length=6)
    c.eq("minPINLength 6", info_key(s, Info.KEY.MIN_PIN_LENGTH), 6)
    c.eq("minPINLength 6 == PIN length: no forced change",
         info_key(s, Info.KEY.FORCE_PIN_CHANGE), False)
    cfg.set_min_pin_length(min_pin_length=7)
    c.eq("minPINLength 7", info_key(s, Info.KEY.MIN_PIN_LENGTH), 7)
    c.eq("minPINLength 7 > PIN length 6 forces a PIN change",
         info_key(s, Info.KEY.FORCE_PIN_CHANGE), True)
    forced(s, "minPINLength above the PIN length")
    c.expect_err("changePIN to 6 characters under minPINLength 7 -> PIN_POLICY_VIOLATION", 0x37,
                 _raw_change_pin, s, s.pin, b"654321".ljust(64, b"\0"))
    s.cp.change_pin(s.pin, new_pin)
    c.ok("changePIN to %d characters" % len(new_pin))
    s.pin = new_pin
    c.eq("forcePINChange false after changePIN", info_key(s, Info.KEY.FORCE_PIN_CHANGE), False)
    c.eq("token with the new PIN", len(s.token(PERM_GA, rp_id)), 32)

    # forceChangePin on its own.
    Config(s.ctap, s.proto, s.token(PERM_ACFG)).set_min_pin_length(force_change_pin=True)
    c.eq("forceChangePin -> forcePINChange true", info_key(s, Info.KEY.FORCE_PIN_CHANGE), True)
    c.eq("forceChangePin keeps minPINLength", info_key(s, Info.KEY.MIN_PIN_LENGTH), 7)
    forced(s, "forceChangePin")
    c.expect_err("forced: changePIN to the same PIN -> PIN_POLICY_VIOLATION", 0x37,
                 s.cp.change_pin, s.pin, s.pin)
    tmp = new_pin[::-1] + "0"
    s.cp.change_pin(s.pin, tmp)
    c.eq("forcePINChange cleared by changePIN", info_key(s, Info.KEY.FORCE_PIN_CHANGE), False)
    s.cp.change_pin(tmp, new_pin)
    c.ok("changePIN back to --new-pin")

    # minPinLengthRPIDs + the minPinLength extension.
    listed = "minpin-listed-v%d.example" % v
    Config(s.ctap, s.proto, s.token(PERM_ACFG)).set_min_pin_length(rp_ids=[listed])
    c.ok("setMinPINLength minPinLengthRPIDs=[%s]" % listed)
    xmake(s, "MC minPinLength for a listed RP", {"id": listed, "name": "listed"},
          user("mpl"), {"minPinLength": True}, want_ext={"minPinLength": 7})
    xmake(s, "MC minPinLength for an unlisted RP: no output", rp, user("mpl2"),
          {"minPinLength": True}, want_ext={})
    c.eq("after the config phase: minPINLength", info_key(s, Info.KEY.MIN_PIN_LENGTH), 7)
    print("PIN %s" % s.pin, flush=True)


def forced(s, why):
    """While forcePINChange is set, tokens are refused without using up
    retries (CTAP 2.1 §6.5.5.7)."""
    c = s.chk
    c.expect_err("%s: getPinUvAuthTokenUsingPinWithPermissions -> PIN_POLICY_VIOLATION" % why,
                 0x37, s.token, PERM_GA, "forced.example")
    ka, shared = s.cp._get_shared_secret()
    c.expect_err("%s: getPinToken (0x05) -> PIN_INVALID" % why, 0x31, s.ctap.client_pin,
                 s.proto.VERSION, ClientPin.CMD.GET_TOKEN_USING_PIN_LEGACY, key_agreement=ka,
                 pin_hash_enc=s.proto.encrypt(shared, sha256(s.pin.encode())[:16]))
    c.eq("%s: the correct PIN keeps 8 retries" % why, s.cp.get_pin_retries()[0], 8)


def phase_ext_minpin(s, a):
    """minPinLength extension: output only for RPs in minPinLengthRPIDs."""
    c = s.chk
    v = s.proto.VERSION
    tag = "v%d%s" % (v, "" if s.pin else "-nopin")
    listed = ["minpin-a-%s.example" % tag, "minpin-b-%s.example" % tag]
    unlisted = "minpin-c-%s.example" % tag
    tok = s.token(PERM_ACFG) if s.pin else None
    cfg = Config(s.ctap, s.proto if tok else None, tok)
    cfg.set_min_pin_length(rp_ids=listed)
    c.ok("Config.set_min_pin_length(rp_ids=%r)" % listed)
    mpl = info_key(s, Info.KEY.MIN_PIN_LENGTH)
    c.eq("MinPinLengthExtension minPinLength -> true",
         MinPinLengthExtension(s.ctap).process_create_input({"minPinLength": True}), True)
    for rp_id in listed:
        for rk in (True, False):
            xmake(s, "MC minPinLength %s rk=%s" % (rp_id, rk), {"id": rp_id, "name": "mpl"},
                  user("mpl-%s-%s" % (rp_id, rk)), {"minPinLength": True}, rk=rk,
                  want_ext={"minPinLength": mpl})
    xmake(s, "MC minPinLength for an unlisted RP: no output", {"id": unlisted, "name": "mpl"},
          user("mpl-c"), {"minPinLength": True}, want_ext={})
    xmake(s, "MC minPinLength=false for a listed RP: no output",
          {"id": listed[0], "name": "mpl"}, user("mpl-f"), {"minPinLength": False}, want_ext={})
    xmake(s, "MC minPinLength + hmac-secret for an unlisted RP: only hmac-secret",
          {"id": unlisted, "name": "mpl"}, user("mpl-h"),
          {"minPinLength": True, "hmac-secret": True}, want_ext={"hmac-secret": True})
    c.expect_err("MC minPinLength as text -> CBOR_UNEXPECTED_TYPE", 0x11, xmc, s,
                 {"id": listed[0]}, user("mpl-t"), {"minPinLength": "yes"})
    if v == 2 or not s.pin:
        client = Fido2Client(s.dev, "https://" + listed[1])
        try:
            res = client.make_credential({
                "rp": {"id": listed[1], "name": "mpl"}, "user": user("mpl-client"),
                "challenge": os.urandom(32), "pubKeyCredParams": [ES256],
                "extensions": {"minPinLength": True}}, pin=s.pin)
            c.eq("Fido2Client minPinLength for a listed RP",
                 res.attestation_object.auth_data.extensions, {"minPinLength": mpl})
        except Exception as e:  # noqa: BLE001
            c.fail("Fido2Client minPinLength", repr(e))


# -- cross-extension rules ----------------------------------------------------


def phase_ext_errors(s, a):
    """Outputs are a subset of inputs, unknown extensions are ignored,
    CTAP 2.2-only response keys never appear, wrong types are rejected."""
    c = s.chk
    v = s.proto.VERSION
    tag = "v%d%s" % (v, "" if s.pin else "-nopin")
    rp_id = "ext-errors-%s.example" % tag
    rp = {"id": rp_id, "name": "ext errors"}

    xmake(s, "MC unknown extension only: ignored, no outputs", rp, user("e-unk"),
          {"unknownExt": True, "x-vendor": {"a": 1}}, want_ext={})
    xmake(s, "MC unknown extension + hmac-secret: only hmac-secret", rp, user("e-unk-h"),
          {"unknownExt": [1, 2], "hmac-secret": True}, want_ext={"hmac-secret": True})

    # Everything at once, raw: response keys and outputs.
    box = {}

    def all_exts():
        box["h"] = HmacInput(s, [os.urandom(32)])
        return {"hmac-secret": True, "credProtect": 2, "credBlob": b"blob", "largeBlobKey": True,
                "minPinLength": True, "hmac-secret-mc": box["h"].ext(), "unknownExt": 5}
    cdh = new_cdh()
    kw = xauth(s, cdh, PERM_MC, rp_id, bool(s.pin))
    req = {1: cdh, 2: rp, 3: user("e-all"), 4: [ES256], 6: all_exts(), 7: {"rk": True}}
    if kw:
        req[8], req[9] = kw["pin_uv_param"], kw["pin_uv_protocol"]
    st, m = raw_cbor(s, CMD_MC, req)
    if c.expect_status("MC with every extension (raw)", 0x00, st):
        c.check("MC response keys are within 0x01-0x05 (no CTAP 2.2 0x06)", set(m) <= MC_KEYS,
                sorted(m))
        c.check("MC response has largeBlobKey (0x05)", len(m.get(5, b"")) == 32, m.get(5))
        ad = AuthenticatorData(m[2])
        ext = ext_outputs(c, "MC with every extension", ad)
        c.eq("MC every extension: output names (minPinLength: RP not listed)", sorted(ext),
             ["credBlob", "credProtect", "hmac-secret", "hmac-secret-mc"])
        c.eq("MC every extension: credProtect 2", ext.get("credProtect"), 2)
        c.eq("MC every extension: credBlob true", ext.get("credBlob"), True)
        cid = ad.credential_data.credential_id

        def ga_exts():
            box["g"] = HmacInput(s, [os.urandom(32)])
            return {"hmac-secret": box["g"].ext(), "credBlob": True, "largeBlobKey": True,
                    "unknownExt": "x", "credProtect": 3}
        cdh = new_cdh()
        kw = xauth(s, cdh, PERM_GA, rp_id, bool(s.pin))
        req = {1: rp_id, 2: cdh, 3: [desc(cid)], 4: ga_exts()}
        if kw:
            req[6], req[7] = kw["pin_uv_param"], kw["pin_uv_protocol"]
        st, m = raw_cbor(s, CMD_GA, req)
        if c.expect_status("GA with every extension (raw)", 0x00, st):
            c.check("GA response keys are within 0x01-0x07 (no CTAP 2.2 0x08)",
                    set(m) <= GA_KEYS, sorted(m))
            c.check("GA response has largeBlobKey (0x07)", len(m.get(7, b"")) == 32, m.get(7))
            ext = ext_outputs(c, "GA with every extension", AuthenticatorData(m[2]))
            c.eq("GA every extension: output names (credProtect is MC-only)", sorted(ext),
                 ["credBlob", "hmac-secret"])
            c.eq("GA every extension: credBlob", ext.get("credBlob"), b"blob")

    # GA with unknown extensions only: no outputs.
    k, _ = xmake(s, "MC plain", rp, user("e-plain"), None, want_ext={})
    r, _ = xga(s, rp_id, [desc(k.id)], {"unknownExt": True})
    ext_outputs(c, "GA unknown extension", r.auth_data)
    c.eq("GA unknown extension: no outputs", r.auth_data.extensions, None)
    r, _ = xga(s, rp_id, [desc(k.id)], {"credBlob": True})
    c.eq("GA credBlob for a credential without blob: empty", (r.auth_data.extensions or {}),
         {"credBlob": b""})

    # Wrong CBOR types for known extensions -> CBOR_UNEXPECTED_TYPE.
    for name, val in (("hmac-secret", 1), ("hmac-secret", "true"), ("credBlob", "text"),
                      ("credBlob", 5), ("largeBlobKey", 1), ("largeBlobKey", "true"),
                      ("minPinLength", 1), ("credProtect", "2")):
        c.expect_err("MC %s = %r -> CBOR_UNEXPECTED_TYPE" % (name, val), 0x11, xmc, s, rp,
                     user("e-type"), {name: val}, True)
    for name, val in (("hmac-secret", True), ("hmac-secret", b"\x00" * 32), ("credBlob", 1),
                      ("largeBlobKey", "yes")):
        c.expect_err("GA %s = %r -> CBOR_UNEXPECTED_TYPE" % (name, val), 0x11, xga, s, rp_id,
                     [desc(k.id)], {name: val})
    c.expect_err("GA hmac-secret saltEnc as text -> CBOR_UNEXPECTED_TYPE", 0x11, xga, s, rp_id,
                 [desc(k.id)], lambda: {"hmac-secret": HmacInput(s, [os.urandom(32)]).ext(
                     enc="salt")})
    st, _ = raw_cbor(s, CMD_MC, {1: new_cdh(), 2: rp, 3: user("e-arr"), 4: [ES256],
                                 6: ["hmac-secret"]})
    c.expect_status("MC extensions as an array -> CBOR_UNEXPECTED_TYPE", 0x11, st)
    st, _ = raw_cbor(s, CMD_GA, {1: rp_id, 2: new_cdh(), 4: "hmac-secret"})
    c.expect_status("GA extensions as text -> CBOR_UNEXPECTED_TYPE", 0x11, st)
    c.eq("daemon still answers getInfo", s.ctap.get_info().aaguid, s.info.aaguid)


def phase_ext_after_reset(s, a):
    """After authenticatorReset: configuration and the large-blob array are
    back to their defaults."""
    c = s.chk
    info = s.ctap.get_info()
    c.eq("after reset: clientPin false", info.options.get("clientPin"), False)
    c.eq("after reset: alwaysUv false", info.options.get("alwaysUv"), False)
    c.eq("after reset: makeCredUvNotRqd true", info.options.get("makeCredUvNotRqd"), True)
    c.eq("after reset: minPINLength 4", info.data.get(Info.KEY.MIN_PIN_LENGTH), 4)
    c.eq("after reset: forcePINChange false", info.data.get(Info.KEY.FORCE_PIN_CHANGE), False)
    st, m = lb_raw(s, get=info.max_msg_size - 64, offset=0)
    c.check("after reset: the large-blob array is the 17-byte empty array",
            st == 0 and m.get(1) == EMPTY_LB_ARRAY, "status 0x%02x %r" % (st, m))
    if a.rp:
        xmake(s, "after reset: minPinLengthRPIDs cleared (no minPinLength output for %s)" % a.rp,
              {"id": a.rp, "name": "after reset"}, user("after-reset"),
              {"minPinLength": True}, uv=False, want_ext={})


PHASES = {
    "info": (phase_info, False),
    "malformed": (phase_malformed, False),
    "selection": (phase_selection, False),
    "seed": (phase_seed, False),
    "mc-ga": (phase_mc_ga, False),
    "persist": (phase_persist, False),
    "pin-policy": (phase_pin_policy, True),
    "set-pin": (phase_set_pin, True),
    "pin": (phase_pin, True),
    "credman": (phase_credman, True),
    "block": (phase_block, True),
    "blocked": (phase_blocked, True),
    "reset": (phase_reset, False),
    "reset-late": (phase_reset_late, False),
    "presence": (phase_presence, False),
    "ext-info": (phase_ext_info, False),
    "ext-hmac": (phase_ext_hmac, True),
    "ext-hmac-persist": (phase_ext_hmac_persist, True),
    "ext-credprotect": (phase_ext_credprotect, True),
    "ext-credblob": (phase_ext_credblob, False),
    "ext-largeblob": (phase_ext_largeblob, False),
    "ext-config-nopin": (phase_ext_config_nopin, True),
    "ext-config": (phase_ext_config, True),
    "ext-minpin": (phase_ext_minpin, True),
    "ext-errors": (phase_ext_errors, True),
    "ext-after-reset": (phase_ext_after_reset, False),
}

# Phases that cannot run without --pin (and --protocol).
NEEDS_PIN = ("set-pin", "pin", "credman", "block", "blocked", "ext-credprotect", "ext-config")

ALL = [
    ("info", {"expect_pin": "unset"}),
    ("malformed", {}),
    ("selection", {}),
    ("mc-ga", {"rp": "nopin.example"}),
    ("pin-policy", {"protocol": 1}),
    ("pin-policy", {"protocol": 2}),
    ("set-pin", {"protocol": 2}),
    ("info", {"expect_pin": "set"}),
    ("pin", {"protocol": 1}),
    ("pin", {"protocol": 2}),
    ("mc-ga", {"protocol": 1, "rp": "p1.example"}),
    ("mc-ga", {"protocol": 2, "rp": "p2.example"}),
    ("credman", {"protocol": 1}),
    ("credman", {"protocol": 2}),
]


def run_phase(sock, name, a):
    fn, needs_proto = PHASES[name]
    chk = Checker(name if a.protocol is None else "%s/v%d" % (name, a.protocol))
    if needs_proto and a.protocol is None:
        chk.fail("arguments", "phase %s needs --protocol 1|2" % name)
        return chk
    if name in NEEDS_PIN and not a.pin:
        chk.fail("arguments", "phase %s needs --pin" % name)
        return chk
    s = None
    try:
        pin = a.pin if a.protocol is not None and name != "pin-policy" else None
        s = Session(sock, chk, a.protocol, pin)
        fn(s, a)
    except Failed:
        pass
    except Exception as e:  # noqa: BLE001
        chk.fail("unexpected exception", "%r\n%s" % (e, traceback.format_exc()))
    finally:
        if s is not None:
            try:
                s.close()
            except Exception:  # noqa: BLE001
                pass
    return chk


def main(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("socket")
    p.add_argument("phase_pos", nargs="?", metavar="PHASE")
    p.add_argument("--phase", dest="phase_opt")
    p.add_argument("--protocol", type=int, choices=(1, 2))
    p.add_argument("--pin")
    p.add_argument("--rp")
    p.add_argument("--state", help="JSON file for credentials shared between phases")
    p.add_argument("--expect-pin", choices=("set", "unset"), default="unset")
    p.add_argument("--expect-retries", type=int)
    p.add_argument("--expect-always-uv", choices=("true", "false"), default="false")
    p.add_argument("--expect-min-pin", type=int, default=4)
    p.add_argument("--expect-force", choices=("true", "false"), default="false")
    p.add_argument("--new-pin", help="ext-config: the PIN to change to (>= 8 characters)")
    p.add_argument("--leave-always-uv", action="store_true",
                   help="ext-config: leave alwaysUv switched on")
    p.add_argument("--fresh", action="store_true",
                   help="ext-largeblob: the authenticator never stored a large blob")
    a = p.parse_args(argv)
    phase = a.phase_opt or a.phase_pos
    if phase != "all" and phase not in PHASES:
        p.error("unknown phase %r (one of: all, %s)" % (phase, ", ".join(sorted(PHASES))))

    start = time.time()
    if phase == "all":
        passed = failed = 0
        pin = a.pin or "123456"
        for name, over in ALL:
            ns = argparse.Namespace(**vars(a))
            ns.pin = pin
            ns.protocol = None
            ns.state = None
            for k, val in over.items():
                setattr(ns, k, val)
            chk = run_phase(a.socket, name, ns)
            passed += chk.passed
            failed += chk.failed
    else:
        chk = run_phase(a.socket, phase, a)
        passed, failed = chk.passed, chk.failed
    print("RESULT %s passed=%d failed=%d (%.1fs)" % (phase, passed, failed, time.time() - start),
          flush=True)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
