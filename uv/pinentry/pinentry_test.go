package pinentry

import (
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestGetPIN(t *testing.T) {
	for _, tt := range []struct {
		name, wire, want string
	}{
		{"digits", `D 123456\nOK`, "123456"},
		// %, CR and LF travel %-escaped.
		{"escaped", `D 4711%25x%0D%0Ay\nOK`, "4711%x\r\ny"},
		{"lowercase hex", `D %2a%2A`, "**"},
		{"split data lines", `D 12\nD 34\nOK`, "1234"},
		{"empty PIN", `OK`, ""},
		{"status and comments ignored", `S PROGRESS 1\n# a comment\nD 99\nS\nOK`, "99"},
		{"64 bytes", `D ` + strings.Repeat("7", 64) + `\nOK`, strings.Repeat("7", 64)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.HasSuffix(tt.wire, "OK") {
				tt.wire += `\nOK`
			}
			f := newFake(t, "FAKE_GETPIN="+tt.wire, "GPG_TTY=/dev/pts/fake", "TERM=xterm-test")
			pin, err := f.p.GetPIN(testCtx(t), Prompt{
				Title: "authd", Description: "Enter the PIN for\nyour passkey (100% local)", Prompt: "PIN:",
				OK: "Unlock", Cancel: "Cancel", Error: "Wrong PIN, 7 tries left", Timeout: 1500 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer pin.Clear()
			if string(pin.Bytes()) != tt.want || pin.Len() != len(tt.want) || !pin.Equal([]byte(tt.want)) {
				t.Errorf("PIN = %q, want %q", pin.Bytes(), tt.want)
			}
			want := []string{
				"OPTION ttyname=/dev/pts/fake",
				"OPTION ttytype=xterm-test",
				"SETTITLE authd",
				"SETDESC Enter the PIN for%0Ayour passkey (100%25 local)",
				"SETPROMPT PIN:",
				"SETOK Unlock",
				"SETCANCEL Cancel",
				"SETERROR Wrong PIN, 7 tries left",
				"SETTIMEOUT 2",
				"GETPIN",
				"BYE",
			}
			if got := f.log(); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("pinentry received\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			pin.Clear()
			if pin.Len() != 0 || pin.b != [MaxSecretLen]byte{} {
				t.Error("Clear left the PIN behind")
			}
		})
	}
}

func TestGetPINMinimalPrompt(t *testing.T) {
	f := newFake(t, `FAKE_GETPIN=D 1\nOK`)
	pin, err := f.p.GetPIN(testCtx(t), Prompt{})
	if err != nil {
		t.Fatal(err)
	}
	pin.Clear()
	if got := strings.Join(f.log(), "|"); got != "GETPIN|BYE" {
		t.Errorf("pinentry received %q, want only GETPIN and BYE", got)
	}
}

func TestGetPINErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  []string
		is   error // nil: any error, but not ErrCancelled
		code uint32
	}{
		{"cancel", []string{"FAKE_GETPIN=ERR 83886179 Operation cancelled <Pinentry>"}, ErrCancelled, 83886179},
		{"fully cancelled", []string{"FAKE_GETPIN=ERR 83886278 Fully canceled"}, ErrCancelled, 83886278},
		{"timeout", []string{"FAKE_GETPIN=ERR 83886142 Timeout <Pinentry>"}, ErrTimeout, 83886142},
		{"other ERR", []string{"FAKE_GETPIN=ERR 83886081 General error"}, nil, 83886081},
		{"too long", []string{"FAKE_GETPIN=D " + strings.Repeat("7", 65) + `\nOK`}, ErrSecretTooLong, 0},
		{"too long over two lines", []string{"FAKE_GETPIN=D " + strings.Repeat("7", 40) + `\nD ` + strings.Repeat("7", 40) + `\nOK`}, ErrSecretTooLong, 0},
		{"malformed escape", []string{`FAKE_GETPIN=D 12%G0\nOK`}, ErrProtocol, 0},
		{"truncated escape", []string{`FAKE_GETPIN=D 12%2\nOK`}, ErrProtocol, 0},
		{"garbage answer", []string{"FAKE_GETPIN=HELLO THERE"}, ErrProtocol, 0},
		{"line too long", []string{"FAKE_GETPIN=D " + strings.Repeat("1", 1200) + `\nOK`}, ErrProtocol, 0},
		{"garbage greeting", []string{"FAKE_GREETING=220 smtp.example.com ESMTP"}, ErrProtocol, 0},
		{"exits before greeting", []string{"FAKE_GREETING=EXIT"}, nil, 0},
		{"exits at GETPIN", []string{"FAKE_GETPIN=EXIT"}, nil, 0},
		{"exits at SETDESC", []string{"FAKE_SETDESC=EXIT"}, nil, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, tt.env...)
			pin, err := f.p.GetPIN(testCtx(t), Prompt{Description: "Enter the PIN"})
			if err == nil {
				pin.Clear()
				t.Fatal("GetPIN succeeded")
			}
			if pin != nil {
				t.Error("GetPIN returned a Secret with an error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("GetPIN = %v, want %v", err, tt.is)
			}
			if tt.is != ErrCancelled && errors.Is(err, ErrCancelled) {
				t.Errorf("GetPIN = %v, must not count as cancelled", err)
			}
			var e *Error
			if tt.code != 0 && (!errors.As(err, &e) || e.Code != tt.code) {
				t.Errorf("GetPIN = %#v, want *Error with code %d", err, tt.code)
			}
			if strings.Contains(err.Error(), "7777") || strings.Contains(err.Error(), "1111") {
				t.Errorf("error %q shows the PIN", err)
			}
			if strings.HasPrefix(tt.name, "exits") && !strings.Contains(err.Error(), "exit status") {
				t.Errorf("error %q does not say the program exited", err)
			}
			eventually(t, testCtx(t), "pinentry to exit", func() bool { return !f.exists("pid") || !alive(f.pid("pid")) })
		})
	}
}

func TestMissingProgram(t *testing.T) {
	_, err := Program{Path: filepath.Join(t.TempDir(), "absent")}.GetPIN(testCtx(t), Prompt{})
	if err == nil || errors.Is(err, ErrCancelled) {
		t.Fatalf("GetPIN = %v, want a start error", err)
	}
	ok, err := Program{Path: filepath.Join(t.TempDir(), "absent")}.Confirm(testCtx(t), Prompt{})
	if ok || err == nil {
		t.Fatalf("Confirm = %v, %v; want false and an error", ok, err)
	}
}

func TestConfirm(t *testing.T) {
	for _, tt := range []struct {
		name, answer string
		want         bool
		is           error // nil: no error
	}{
		{"ok", "OK", true, nil},
		{"ok after status", `S BUTTON_INFO ok\nOK`, true, nil},
		{"cancel", "ERR 83886179 Operation cancelled <Pinentry>", false, nil},
		{"not confirmed", "ERR 83886194 Not confirmed <Pinentry>", false, nil},
		{"timeout", "ERR 83886142 Timeout <Pinentry>", false, ErrTimeout},
		{"other ERR", "ERR 83886081 General error", false, &Error{}},
		{"garbage", "yes please", false, ErrProtocol},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, "FAKE_CONFIRM="+tt.answer)
			ok, err := f.p.Confirm(testCtx(t), Prompt{Title: "authd", Description: `Sign in to example.com as "alice"?`, OK: "Allow", Cancel: "Deny"})
			if ok != tt.want {
				t.Errorf("Confirm = %v, want %v", ok, tt.want)
			}
			switch e := tt.is.(type) {
			case nil:
				if err != nil {
					t.Errorf("Confirm error = %v", err)
				}
			case *Error:
				if !errors.As(err, &e) {
					t.Errorf("Confirm error = %v, want *Error", err)
				}
			default:
				if !errors.Is(err, e) {
					t.Errorf("Confirm error = %v, want %v", err, e)
				}
			}
			log := strings.Join(f.log(), "\n")
			if !strings.Contains(log, "SETDESC Sign in to example.com as \"alice\"?\nSETOK Allow\nSETCANCEL Deny\nCONFIRM") {
				t.Errorf("pinentry received\n%s", log)
			}
		})
	}
}

func TestInquireIsCancelled(t *testing.T) {
	// The PIN arrives only after authd answers the inquiry with CAN.
	f := newFake(t, `FAKE_GETPIN=S NEEDPIN\n# quality bar next\nINQUIRE QUALITY 1234`, `FAKE_CAN=D 12\nD 34\nOK`)
	pin, err := f.p.GetPIN(testCtx(t), Prompt{})
	if err != nil {
		t.Fatal(err)
	}
	defer pin.Clear()
	if !pin.Equal([]byte("1234")) {
		t.Errorf("PIN = %q", pin.Bytes())
	}
	if got := strings.Join(f.log(), "|"); got != "GETPIN|CAN|BYE" {
		t.Errorf("pinentry received %q", got)
	}
}

func TestContextEndsPinentry(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  []string
	}{
		{"honours SIGTERM", nil},
		{"ignores SIGTERM", []string{"FAKE_TRAP=1"}}, // the sleeping child does not: its own trap is reset
	} {
		for _, confirm := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s confirm=%v", tt.name, confirm), func(t *testing.T) {
				tctx := testCtx(t)
				f := newFake(t, append(tt.env, "FAKE_GETPIN=SLEEP", "FAKE_CONFIRM=SLEEP")...)
				ctx, cancel := context.WithTimeout(tctx, 300*time.Millisecond)
				defer cancel()
				start := time.Now()
				var err error
				if confirm {
					var ok bool
					ok, err = f.p.Confirm(ctx, Prompt{Description: "slow"})
					if ok {
						t.Error("Confirm approved")
					}
				} else {
					var pin *Secret
					pin, err = f.p.GetPIN(ctx, Prompt{Description: "slow"})
					pin.Clear()
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want context.DeadlineExceeded", err)
				}
				if d := time.Since(start); d > 10*time.Second {
					t.Errorf("took %v", d)
				}
				pid, child := f.pid("pid"), f.pid("child")
				if alive(pid) {
					t.Errorf("pinentry %d still running", pid)
				}
				eventually(t, tctx, "pinentry's child to die", func() bool { return !alive(child) })
			})
		}
	}
}

func TestCancelledBeforeStart(t *testing.T) {
	f := newFake(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	if _, err := f.p.GetPIN(ctx, Prompt{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetPIN = %v, want context.Canceled", err)
	}
	if f.exists("pid") {
		t.Error("pinentry ran despite a cancelled context")
	}
}

func TestPromptTimeoutEnforced(t *testing.T) {
	// A pinentry that ignores SETTIMEOUT is stopped shortly after it.
	f := newFake(t, "FAKE_GETPIN=SLEEP")
	_, err := f.p.GetPIN(testCtx(t), Prompt{Timeout: 10 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("GetPIN = %v, want ErrTimeout", err)
	}
	if alive(f.pid("pid")) {
		t.Error("pinentry still running")
	}
}

func TestLongDescriptionEscaping(t *testing.T) {
	// What a hostile website might put in an RP name or user name.
	unit := "100% sure\r\nline\rtwo \x1b[31mred\x1b[0m \u202egnp.exe\u200b \x00\x7f\u0085 ünïcödé "
	desc := strings.Repeat(unit, 60)
	f := newFake(t, "FAKE_CONFIRM=OK")
	ok, err := f.p.Confirm(testCtx(t), Prompt{
		Title:       "evil\ntitle\x1b]0;owned\x07",
		Description: desc,
		Prompt:      strings.Repeat("%", 2000),
		Error:       "bad\r\nPIN",
	})
	if err != nil || !ok {
		t.Fatalf("Confirm = %v, %v", ok, err)
	}
	lines := map[string]string{}
	for _, l := range f.log() {
		if len(l) > MaxLine {
			t.Errorf("line of %d bytes: %.40q...", len(l), l)
		}
		for _, r := range l {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e' || r == '\u200b' {
				t.Errorf("line %.20q... carries %U", l, r)
				break
			}
		}
		verb, arg, _ := strings.Cut(l, " ")
		lines[verb] = arg
	}
	if got, want := lines["SETTITLE"], "eviltitle]0;owned"; got != want {
		t.Errorf("SETTITLE %q, want %q", got, want)
	}
	if got, want := lines["SETERROR"], "bad%0APIN"; got != want {
		t.Errorf("SETERROR %q, want %q", got, want)
	}
	d := lines["SETDESC"]
	wantUnit := "100%25 sure%0Aline%0Atwo [31mred[0m gnp.exe  ünïcödé "
	if !strings.HasPrefix(d, wantUnit+wantUnit) || !strings.HasSuffix(d, "…") {
		t.Errorf("SETDESC = %.200q...%q", d, d[max(0, len(d)-20):])
	}
	if !strings.HasPrefix(unescape(d), sanitize(desc, true)[:500]) {
		t.Error("SETDESC does not decode to the sanitised description")
	}
	p := lines["SETPROMPT"]
	if !strings.HasPrefix(p, "%25%25") || !strings.HasSuffix(p, "%25…") {
		t.Errorf("SETPROMPT = ...%q", p[max(0, len(p)-20):])
	}
}

func TestEscapeArg(t *testing.T) {
	for _, tt := range []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 100, "plain"},
		{"a%b\rc\nd", 100, "a%25b%0Dc%0Ad"},
		{"\x01\x1f\x7f", 100, "%01%1F%7F"},
		{"bad\xffutf8", 100, "bad\uFFFDutf8"},
		{"abcdef", 6, "abcdef"}, // fits exactly: no mark
		{"abcdefg", 6, "abc…"},  // "…" is 3 bytes
		{"ab%cd", 6, "ab…"},     // never half an escape
		{"abcd%", 7, "abcd%25"},
		{"abc%de", 8, "abc%25de"},
		{"abc%de", 7, "abc…"},
		{"ééééé", 8, "éé…"}, // never half a rune
		{"x", 0, ""},
	} {
		if got := escapeArg(tt.in, tt.max); got != tt.want {
			t.Errorf("escapeArg(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
		if got := escapeArg(tt.in, tt.max); len(got) > tt.max {
			t.Errorf("escapeArg(%q, %d) is %d bytes", tt.in, tt.max, len(got))
		}
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", MaxLine)
	in := "OK Pleased\r\nD " + long[2:] + "\n" + "S a\n" + "D " + long + "\n"
	l := &lineReader{r: iotest.OneByteReader(strings.NewReader(in))}
	for _, want := range []string{"OK Pleased", "D " + long[2:], "S a"} {
		got, err := l.readLine()
		if err != nil || string(got) != want {
			t.Fatalf("readLine = %.30q..., %v; want %.30q...", got, err, want)
		}
	}
	if _, err := l.readLine(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("readLine of %d bytes: %v, want ErrProtocol", MaxLine+2, err)
	}
	l = &lineReader{r: strings.NewReader("OK")}
	if _, err := l.readLine(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("readLine of an unterminated line: %v", err)
	}
	l.wipe()
	if l.buf != [len(l.buf)]byte{} {
		t.Error("wipe left data")
	}
}

func TestSecretRedacted(t *testing.T) {
	s := new(Secret)
	if err := decodeData(s, []byte("98765%25")); err != nil {
		t.Fatal(err)
	}
	defer s.Clear()
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
		for _, v := range []any{s, *s, struct{ S Secret }{*s}, []*Secret{s}} {
			if got := fmt.Sprintf(format, v); strings.Contains(got, "98765") || strings.Contains(got, "3938") || strings.Contains(got, "57") && format == "%d" {
				t.Errorf("Sprintf(%q) = %q shows the PIN", format, got)
			}
		}
	}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "pin", s, "val", *s)
	if strings.Contains(logged.String(), "98765") || !strings.Contains(logged.String(), "pin=[REDACTED]") {
		t.Errorf("slog wrote %q", logged.String())
	}
	if b, err := json.Marshal(s); err == nil {
		t.Errorf("json.Marshal = %s", b)
	}
	if b, err := json.Marshal(struct{ S Secret }{*s}); err == nil {
		t.Errorf("json.Marshal of a struct = %s", b)
	}
	if err := gob.NewEncoder(io.Discard).Encode(s); err == nil {
		t.Error("gob encoded a Secret")
	}
	if got := string(s.Bytes()); got != "98765%" {
		t.Errorf("Bytes = %q", got)
	}
	if s.Equal([]byte("98765")) || !s.Equal([]byte("98765%")) {
		t.Error("Equal is wrong")
	}
	var nilSecret *Secret
	nilSecret.Clear() // must not panic
}
