// Package swtpmtest runs swtpm, the software TPM 2.0, for tests: a
// foreground child process on a test's state directory, serving raw TPM
// commands on a Unix socket (--server type=unixio) with a control socket
// next to it, started with --flags not-need-init,startup-clear. Stop sends
// TPM2_Shutdown(CLEAR) first, so that restarts are orderly and add nothing to
// the dictionary-attack counter.
//
// Start registers a cleanup that checks that no transient object or session
// is left loaded (so register it before whatever uses the TPM, whose cleanup
// then runs first), then stops swtpm. Tests skip when swtpm is not installed,
// and fail instead when the CI environment variable is set.
//
// It talks to swtpm with go-tpm directly, not through authd's tpm package,
// so the checks are independent of the code under test.
package swtpmtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Require skips tb when swtpm is missing, or fails it under CI.
func Require(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		msg := fmt.Sprintf("swtpm not installed (apt-get install swtpm swtpm-tools; scripts/test.sh does): %v", err)
		if os.Getenv("CI") != "" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
}

// TPM is one swtpm process (restartable) on one state directory.
type TPM struct {
	tb    testing.TB
	State string // --tpmstate dir
	Sock  string // data socket; the control socket is Sock+".ctrl"

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan error
	out  *bytes.Buffer
}

// Start starts swtpm on a new state directory.
func Start(tb testing.TB) *TPM { return StartState(tb, tb.TempDir()) }

// StartState starts swtpm on state (a directory; created if missing).
func StartState(tb testing.TB, state string) *TPM {
	tb.Helper()
	Require(tb)
	if err := os.MkdirAll(state, 0o700); err != nil {
		tb.Fatal(err)
	}
	// sun_path holds 108 bytes; test directories can be longer.
	sockDir, err := os.MkdirTemp("", "swtpm-")
	if err != nil {
		tb.Fatal(err)
	}
	s := &TPM{tb: tb, State: state, Sock: filepath.Join(sockDir, "tpm.sock")}
	tb.Cleanup(func() {
		if s.Running() {
			s.AssertNoHandles(tb)
			s.Stop()
		}
		os.RemoveAll(sockDir)
	})
	s.Start()
	return s
}

// Spec is the authd --tpm value for this swtpm.
func (s *TPM) Spec() string { return "swtpm:" + s.Sock }

// Running reports whether the process runs.
func (s *TPM) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Start starts the process (again) and waits until it accepts connections.
func (s *TPM) Start() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.tb.Fatal("swtpmtest: already running")
	}
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+s.State,
		"--server", "type=unixio,path="+s.Sock,
		"--ctrl", "type=unixio,path="+s.Sock+".ctrl",
		"--flags", "not-need-init,startup-clear",
		"--log", "file="+filepath.Join(s.State, "swtpm.log")+",level=1")
	out := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("swtpmtest: start swtpm: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", s.Sock)
		if err == nil {
			c.Close()
			break
		}
		select {
		case werr := <-done:
			s.tb.Fatalf("swtpmtest: swtpm exited: %v: %s", werr, out)
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			s.tb.Fatalf("swtpmtest: swtpm does not listen on %s: %v: %s", s.Sock, err, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.cmd, s.done, s.out = cmd, done, out
}

// Stop sends TPM2_Shutdown(CLEAR), asks swtpm to exit on its control socket
// and waits for the process.
func (s *TPM) Stop() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(s.Transport()); err != nil {
		s.tb.Errorf("swtpmtest: TPM2_Shutdown: %v", err)
	}
	if c, err := net.Dial("unix", s.Sock+".ctrl"); err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		const cmdShutdown = 3 // swtpm control protocol: CMD_SHUTDOWN
		c.Write(binary.BigEndian.AppendUint32(nil, cmdShutdown))
		var rsp [4]byte
		io.ReadFull(c, rsp[:])
		c.Close()
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.tb.Errorf("swtpmtest: swtpm did not exit on CMD_SHUTDOWN")
	}
	s.cmd = nil
}

// Restart stops and starts swtpm on the same state: the TPM keeps its seeds
// (so its SRK and every blob stay valid) and loses every loaded object and
// session.
func (s *TPM) Restart() {
	s.tb.Helper()
	s.Stop()
	s.Start()
}

// Transport returns a transport that dials the data socket for every
// command (swtpm serves one connection at a time, so it interleaves with
// authd's own) and retries TPM_RC_RETRY.
func (s *TPM) Transport() transport.TPM { return transport.FromReadWriteCloser(&dialer{path: s.Sock}) }

// dialer is an io.ReadWriteCloser that connects on Write and disconnects
// after reading one whole response.
type dialer struct {
	path string
	conn net.Conn
}

func (d *dialer) Write(b []byte) (int, error) {
	if d.conn != nil {
		d.conn.Close()
	}
	c, err := net.Dial("unix", d.path)
	if err != nil {
		return 0, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	d.conn = c
	return c.Write(b)
}

func (d *dialer) Read(b []byte) (int, error) {
	if d.conn == nil {
		return 0, errors.New("swtpmtest: read before write")
	}
	// go-tpm reads a response with one Read into a large buffer: read the
	// header, then exactly the size it announces.
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(d.conn, hdr); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint32(hdr[2:6]))
	if n < 10 || n > len(b) {
		return 0, fmt.Errorf("swtpmtest: response of %d bytes", n)
	}
	copy(b, hdr)
	if _, err := io.ReadFull(d.conn, b[10:n]); err != nil {
		return 0, err
	}
	d.conn.Close()
	d.conn = nil
	return n, nil
}

func (d *dialer) Close() error {
	if d.conn != nil {
		return d.conn.Close()
	}
	return nil
}

// Handles lists the TPM's handles of type ht (TPM2_GetCapability).
func (s *TPM) Handles(ht tpm2.TPMHT) ([]tpm2.TPMHandle, error) {
	t := s.Transport()
	var out []tpm2.TPMHandle
	next := uint32(ht) << 24
	for {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: next, PropertyCount: 64}.Execute(t)
		if err != nil {
			return nil, err
		}
		l, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, err
		}
		for _, h := range l.Handle {
			if uint32(h)>>24 == uint32(ht) {
				out = append(out, h)
			}
		}
		if !rsp.MoreData || len(l.Handle) == 0 {
			return out, nil
		}
		next = uint32(l.Handle[len(l.Handle)-1]) + 1
	}
}

// AssertNoHandles fails tb if any transient object or session is loaded.
func (s *TPM) AssertNoHandles(tb testing.TB) {
	tb.Helper()
	for _, ht := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		hs, err := s.Handles(ht)
		if err != nil {
			tb.Errorf("swtpmtest: leak check: %v", err)
			return
		}
		if len(hs) != 0 {
			tb.Errorf("swtpmtest: leaked TPM handles (type %#x): %#x", uint32(ht), hs)
		}
	}
}

// DA is the TPM's dictionary-attack state.
type DA struct {
	MaxTries, RecoveryTime, LockoutRecovery, Counter uint32
}

// DA reads TPM_PT_MAX_AUTH_FAIL, TPM_PT_LOCKOUT_INTERVAL,
// TPM_PT_LOCKOUT_RECOVERY and TPM_PT_LOCKOUT_COUNTER.
func (s *TPM) DA() DA {
	s.tb.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties,
		Property: uint32(tpm2.TPMPTLockoutCounter), PropertyCount: 4}.Execute(s.Transport())
	if err != nil {
		s.tb.Fatalf("swtpmtest: GetCapability: %v", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		s.tb.Fatal(err)
	}
	var da DA
	for _, p := range props.TPMProperty {
		switch p.Property {
		case tpm2.TPMPTMaxAuthFail:
			da.MaxTries = p.Value
		case tpm2.TPMPTLockoutInterval:
			da.RecoveryTime = p.Value
		case tpm2.TPMPTLockoutRecovery:
			da.LockoutRecovery = p.Value
		case tpm2.TPMPTLockoutCounter:
			da.Counter = p.Value
		}
	}
	return da
}

// SetDA sets the dictionary-attack parameters through the lockout
// hierarchy (empty lockout password): TPM2_DictionaryAttackParameters.
func (s *TPM) SetDA(maxTries, recoveryTime, lockoutRecovery uint32) {
	s.tb.Helper()
	p := binary.BigEndian.AppendUint32(nil, maxTries)
	p = binary.BigEndian.AppendUint32(p, recoveryTime)
	p = binary.BigEndian.AppendUint32(p, lockoutRecovery)
	if err := s.lockoutCmd(tpm2.TPMCCDictionaryAttackParameters, p); err != nil {
		s.tb.Fatalf("swtpmtest: TPM2_DictionaryAttackParameters: %v", err)
	}
}

// ResetLockout clears the DA counter: TPM2_DictionaryAttackLockReset.
func (s *TPM) ResetLockout() {
	s.tb.Helper()
	if err := s.lockoutCmd(tpm2.TPMCCDictionaryAttackLockReset, nil); err != nil {
		s.tb.Fatalf("swtpmtest: TPM2_DictionaryAttackLockReset: %v", err)
	}
}

// lockoutCmd sends a command authorised by the lockout hierarchy with an
// empty password session; go-tpm v0.9.8 has no structures for these two
// commands (TPM 2.0 Part 3, 25.2 and 25.3).
func (s *TPM) lockoutCmd(cc tpm2.TPMCC, params []byte) error {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint16(tpm2.TPMSTSessions))
	binary.Write(&b, binary.BigEndian, uint32(0)) // size, patched below
	binary.Write(&b, binary.BigEndian, uint32(cc))
	binary.Write(&b, binary.BigEndian, uint32(tpm2.TPMRHLockout))
	binary.Write(&b, binary.BigEndian, uint32(9)) // authorizationSize
	binary.Write(&b, binary.BigEndian, uint32(tpm2.TPMRSPW))
	binary.Write(&b, binary.BigEndian, uint16(0)) // nonce
	b.WriteByte(0x01)                             // continueSession
	binary.Write(&b, binary.BigEndian, uint16(0)) // empty password
	b.Write(params)
	cmd := b.Bytes()
	binary.BigEndian.PutUint32(cmd[2:6], uint32(len(cmd)))
	rsp, err := s.Transport().Send(cmd)
	if err != nil {
		return err
	}
	if len(rsp) < 10 {
		return errors.New("short response")
	}
	if rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])); rc != tpm2.TPMRCSuccess {
		return rc
	}
	return nil
}
