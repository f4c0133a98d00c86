package pinentry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeScript is a pinentry that speaks Assuan from sh. It answers each
// command VERB with $FAKE_VERB (default "OK"; printf %b, so "\n" separates
// lines), logs every command line to $FAKE_DIR/log, and understands:
//
//	FAKE_GREETING  the first line (default "OK Pleased to meet you"); EXIT: exit 2 at once
//	FAKE_TRAP=1    ignore SIGTERM (so that only SIGKILL stops it)
//	NONE           answer nothing
//	SLEEP          start a child sleeping for a long time (its pid in
//	               $FAKE_DIR/child, ours in $FAKE_DIR/pid) and wait for it
//	EXIT           exit with status 3 without answering
const fakeScript = `#!/bin/sh
d="$FAKE_DIR"
[ "$FAKE_TRAP" = 1 ] && trap '' TERM
echo $$ > "$d/pid.tmp" && mv "$d/pid.tmp" "$d/pid"
[ "$FAKE_GREETING" = EXIT ] && { echo "no display" >&2; exit 2; }
printf '%b\n' "${FAKE_GREETING-OK Pleased to meet you}"
while IFS= read -r line; do
	printf '%s\n' "$line" >> "$d/log"
	verb=${line%% *}
	case "$verb" in
	*[!A-Z]*|'') resp=OK ;;
	BYE) resp=${FAKE_BYE-OK closing connection} ;;
	*) eval "resp=\${FAKE_$verb-OK}" ;;
	esac
	case "$resp" in
	NONE) ;;
	SLEEP) sleep 100000 & echo $! > "$d/child.tmp" && mv "$d/child.tmp" "$d/child"; wait ;;
	EXIT) echo "fake pinentry gave up" >&2; exit 3 ;;
	*) printf '%b\n' "$resp" ;;
	esac
	[ "$verb" = BYE ] && exit 0
done
`

// fake is one fake pinentry in its own directory.
type fake struct {
	t   *testing.T
	dir string
	p   Program
}

// newFake writes the fake; env sets its FAKE_* answers.
func newFake(t *testing.T, env ...string) *fake {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "pinentry-fake")
	if err := os.WriteFile(path, []byte(fakeScript), 0o755); err != nil {
		t.Fatal(err)
	}
	return &fake{t: t, dir: dir, p: Program{Path: path, Env: append([]string{"FAKE_DIR=" + dir}, env...)}}
}

// log returns the command lines the fake received.
func (f *fake) log() []string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, "log"))
	if err != nil && !os.IsNotExist(err) {
		f.t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// pid reads $FAKE_DIR/name (pid or child).
func (f *fake) pid(name string) int {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, name))
	if err != nil {
		f.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		f.t.Fatal(err)
	}
	return pid
}

func (f *fake) exists(name string) bool {
	_, err := os.Stat(filepath.Join(f.dir, name))
	return err == nil
}

// alive reports whether pid exists and is not a zombie (orphans may be left
// unreaped by a container's init).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// testCtx is cancelled when the test ends or shortly before its deadline.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx := t.Context()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-5*time.Second))
		t.Cleanup(cancel)
	}
	return ctx
}

// eventually polls cond until it holds, failing the test if ctx ends first.
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
