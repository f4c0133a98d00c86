#!/usr/bin/python3
"""python-fido2 (0.9.1) fingerprint scenario for authd with fprintd.

    /usr/bin/python3 fido2_bio.py SOCKET --pin PIN

authd must run with --fingerprint system against fprintd's virtual device
(see fprint_test.go, which owns the processes). The script cannot touch the
virtual device itself (its socket exists only while fprintd has the device
claimed), so it tells the Go test what to feed it, one line each:

  FP <command>   send <command> ("SCAN id", "RETRY n") to the virtual device
                 now: an enrollment holds the device, so it is queued for the
                 capture the script asks for next;
  VSCAN <id>     at the next verification fprintd starts (VerifyFingerSelected),
                 scan <id>; "VSCAN -" scans nothing (a cancelled attempt).

Print ids: print-A is the enrolled finger, print-B someone else's.

Output follows fido2_client.py: "PASS bio: ..." / "FAIL bio: ..." lines and a
final "RESULT bio passed=N failed=M"; exit status 0 only if all passed.
"""

import argparse
import os
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fido2.ctap import CtapError  # noqa: E402
from fido2.ctap2 import ClientPin, Ctap2, PinProtocolV2  # noqa: E402
from fido2.ctap2.bio import CaptureError, FPBioEnrollment  # noqa: E402

from fido2_client import Checker, Failed, open_device  # noqa: E402

PERM_MC = ClientPin.PERMISSION.MAKE_CREDENTIAL
PERM_GA = ClientPin.PERMISSION.GET_ASSERTION
PERM_BE = ClientPin.PERMISSION.BIO_ENROLL

FLAG_UP, FLAG_UV = 0x01, 0x04
STATUS_UPNEEDED = 2

# CTAP status codes (python-fido2 0.9.1 lacks or misspells some names).
UV_BLOCKED = 0x3C
UV_INVALID = 0x3F
PUAT_REQUIRED = 0x36
KEEPALIVE_CANCEL = 0x2D
NOT_ALLOWED = 0x30

RP = {"id": "bio.example", "name": "Bio Example"}
USER = {"id": b"bio-user-0001", "name": "bio", "displayName": "Bio User"}
ES256 = [{"type": "public-key", "alg": -7}]


def fp(cmd):
    print("FP %s" % cmd, flush=True)


def vscan(pid):
    print("VSCAN %s" % pid, flush=True)


class Bio(object):
    def __init__(self, sock, chk, pin):
        self.chk = chk
        self.pin = pin
        self.dev = open_device(sock)
        self.ctap = Ctap2(self.dev)
        self.proto = PinProtocolV2()
        self.cp = ClientPin(self.ctap, self.proto)

    def refresh(self):
        self.ctap._info = self.ctap.get_info()
        return self.ctap.info

    def uv_token(self, perms, rp_id=None):
        return self.cp.get_uv_token(perms, rp_id)

    def bio(self, token):
        return FPBioEnrollment(self.ctap, self.proto, token)

    def mc(self, token):
        cdh = os.urandom(32)
        return self.ctap.make_credential(
            cdh, RP, USER, ES256,
            pin_uv_param=self.proto.authenticate(token, cdh),
            pin_uv_protocol=self.proto.VERSION)

    def ga_uv(self, cred_id, event=None, on_keepalive=None):
        return self.ctap.get_assertion(
            RP["id"], os.urandom(32), [{"type": "public-key", "id": cred_id}],
            options={"uv": True}, event=event, on_keepalive=on_keepalive)

    def ga_token(self, cred_id, token):
        cdh = os.urandom(32)
        return self.ctap.get_assertion(
            RP["id"], cdh, [{"type": "public-key", "id": cred_id}],
            pin_uv_param=self.proto.authenticate(token, cdh),
            pin_uv_protocol=self.proto.VERSION)

    def retries(self):
        return self.cp.get_uv_retries()[0]


def uv_flag(auth_data):
    return bool(auth_data.flags & FLAG_UV)


def scenario(b, chk):
    info = b.refresh()
    o = info.options
    chk.eq("getInfo uv before enrollment", o.get("uv"), False)
    chk.eq("getInfo bioEnroll before enrollment", o.get("bioEnroll"), False)
    chk.eq("getInfo uvBioEnroll", o.get("uvBioEnroll"), True)
    chk.eq("getInfo pinUvAuthToken", o.get("pinUvAuthToken"), True)
    chk.eq("getInfo uvModality fingerprint", info.uv_modality, 0x02)
    chk.eq("uv retries at start", b.retries(), 8)

    b.cp.set_pin(b.pin)
    b.refresh()
    chk.ok("PIN set")
    tok = b.cp.get_pin_token(b.pin, PERM_BE)
    bio = b.bio(tok)
    si = bio.get_fingerprint_sensor_info()
    chk.eq("sensor kind swipe", si.get(2), 2)
    chk.eq("sensor samples", si.get(3), 5)
    chk.eq("no enrollments", bio.enumerate_enrollments(), {})

    # Enrollment: a too-short swipe in the middle is reported as FP_TOO_SHORT
    # and does not count.
    ctx = bio.enroll(timeout=15000)
    template = None
    statuses = []
    for i in range(12):
        if i == 2:
            fp("RETRY 1")
        else:
            fp("SCAN print-A")
        try:
            template = ctx.capture()
            statuses.append((0, ctx.remaining))
        except CaptureError as e:
            statuses.append((int(e.code), ctx.remaining))
        if template is not None:
            break
    chk.eq("enroll statuses (status, remaining)", statuses,
           [(0, 4), (0, 3), (0x09, 3), (0, 2), (0, 1), (0, 0)])
    chk.require("enrolled", template is not None, "statuses %r" % statuses)
    chk.eq("template id is the fprintd finger", template, b"left-thumb")
    chk.eq("enumerate: default name", bio.enumerate_enrollments(), {template: "left-thumb"})
    bio.set_name(template, "Thumb")
    chk.eq("enumerate after set_name", bio.enumerate_enrollments(), {template: "Thumb"})
    chk.expect_err("set_name unknown template", 0x2C, bio.set_name, b"right-thumb", "x")
    chk.expect_err("remove unknown template", 0x2C, bio.remove_enrollment, b"right-thumb")

    o = b.refresh().options
    chk.eq("getInfo uv after enrollment", o.get("uv"), True)
    chk.eq("getInfo bioEnroll after enrollment", o.get("bioEnroll"), True)

    # Built-in UV token from a matching scan.
    vscan("print-A")
    tok = b.uv_token(PERM_MC | PERM_GA, RP["id"])
    chk.ok("getPinUvAuthTokenUsingUvWithPermissions with a matching scan")
    att = b.mc(tok)
    chk.check("MC with the UV token: UV flag", uv_flag(att.auth_data))
    cred_id = att.auth_data.credential_data.credential_id

    vscan("print-A")
    r = b.ga_uv(cred_id)
    chk.check("GA uv=true with a matching scan: UV flag", uv_flag(r.auth_data))
    chk.check("GA uv=true: UP flag", r.auth_data.flags & FLAG_UP)

    # Internal retries within one request: two misses, then a match.
    for pid in ("print-B", "print-B", "print-A"):
        vscan(pid)
    r = b.ga_uv(cred_id)
    chk.check("GA uv=true after two misses: UV flag", uv_flag(r.auth_data))
    chk.eq("uv retries reset by a match", b.retries(), 8)

    # Cancel mid-verification (CTAPHID_CANCEL).
    vscan("-")
    ev = threading.Event()
    seen = []

    def ka(status):
        if status == STATUS_UPNEEDED and not seen:
            seen.append(status)
            threading.Timer(0.5, ev.set).start()

    chk.expect_err("GA uv=true cancelled", KEEPALIVE_CANCEL, b.ga_uv, cred_id, ev, ka)
    chk.check("keepalive UPNEEDED while waiting for the finger", seen)
    chk.eq("uv retries unchanged by a cancel", b.retries(), 8)

    # Non-matching scans: retries count down, then UV is blocked.
    for left in range(7, 0, -1):
        vscan("print-B")
        chk.expect_err("UV token, wrong finger (%d left)" % left, UV_INVALID,
                       b.uv_token, PERM_GA, RP["id"])
        chk.eq("uv retries %d" % left, b.retries(), left)
    vscan("print-B")
    chk.expect_err("UV token, 8th wrong finger", UV_BLOCKED, b.uv_token, PERM_GA, RP["id"])
    chk.eq("uv retries 0", b.retries(), 0)
    chk.expect_err("UV token while blocked (no scan)", UV_BLOCKED, b.uv_token, PERM_GA, RP["id"])
    chk.expect_err("GA uv=true while blocked -> PUAT_REQUIRED (PIN fallback)", PUAT_REQUIRED,
                   b.ga_uv, cred_id)

    # PIN fallback: works, gives UV, and unblocks the fingerprint.
    tok = b.cp.get_pin_token(b.pin, PERM_GA, RP["id"])
    r = b.ga_token(cred_id, tok)
    chk.check("GA with a PIN token while UV blocked: UV flag", uv_flag(r.auth_data))
    chk.eq("uv retries after the correct PIN", b.retries(), 8)
    vscan("print-A")
    b.uv_token(PERM_GA, RP["id"])
    chk.ok("UV token works again after the PIN")

    # Remove with a be token from the fingerprint itself (uvBioEnroll).
    vscan("print-A")
    tok = b.uv_token(PERM_BE)
    bio = b.bio(tok)
    bio.remove_enrollment(template)
    chk.eq("enumerate after remove", bio.enumerate_enrollments(), {})
    o = b.refresh().options
    chk.eq("getInfo uv after removal", o.get("uv"), False)
    chk.eq("getInfo bioEnroll after removal", o.get("bioEnroll"), False)
    chk.expect_err("UV token with nothing enrolled", NOT_ALLOWED, b.uv_token, PERM_GA, RP["id"])
    tok = b.cp.get_pin_token(b.pin, PERM_GA, RP["id"])
    chk.check("PIN token still works", uv_flag(b.ga_token(cred_id, tok).auth_data))


def main(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("socket")
    p.add_argument("--pin", required=True)
    a = p.parse_args(argv)
    chk = Checker("bio")
    start = time.time()
    b = None
    try:
        b = Bio(a.socket, chk, a.pin)
        scenario(b, chk)
    except Failed:
        pass
    except Exception as e:  # noqa: BLE001
        chk.fail("unexpected exception", "%r\n%s" % (e, traceback.format_exc()))
    finally:
        if b is not None:
            try:
                b.dev.close()
            except Exception:  # noqa: BLE001
                pass
    print("RESULT bio passed=%d failed=%d (%.1fs)" % (chk.passed, chk.failed, time.time() - start),
          flush=True)
    return 0 if chk.failed == 0 and chk.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
