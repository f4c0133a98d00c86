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
from fido2.ctap2 import (
    AssertionResponse,
    ClientPin,
    CredentialManagement,
    Ctap2,
    PinProtocolV1,
    PinProtocolV2,
)
from fido2.ctap2.base import args as ctap_args
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
}

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
    if name in ("set-pin", "pin", "credman", "block", "blocked") and not a.pin:
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
