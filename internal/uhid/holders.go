package uhid

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Process is a process that has a file open.
type Process struct {
	PID  int
	Comm string // the command name (/proc/PID/comm)
	Exe  string // the executable, if readable (/proc/PID/exe)
}

// ErrScanLimit is returned with the processes found so far when Holders
// stops at its bound on work.
var ErrScanLimit = errors.New("uhid: process scan stopped at its limit")

// Bounds of Holders: attribution is for log lines and must stay cheap.
const (
	holdersMaxLinks = 1 << 16
	holdersBudget   = 250 * time.Millisecond
)

// Holders returns the processes, other than the caller, that have devPath
// (e.g. a /dev/hidrawN node) open, sorted by PID, by reading the fd links
// under procRoot (normally /proc). Processes it may not inspect (other
// users', or gone meanwhile) are skipped silently, so it sees the caller's
// user's processes unless run as root. It reads at most 65536 links or for
// 250 ms, then returns what it found with ErrScanLimit.
func Holders(procRoot, devPath string) ([]Process, error) {
	return holders(procRoot, devPath, os.Getpid(), holdersMaxLinks, time.Now().Add(holdersBudget))
}

func holders(procRoot, devPath string, self, maxLinks int, deadline time.Time) ([]Process, error) {
	targets := []string{filepath.Clean(devPath)}
	if real, err := filepath.EvalSymlinks(devPath); err == nil && real != targets[0] {
		targets = append(targets, real) // fd links show the resolved path
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var found []Process
	links := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 || pid == self {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if links >= maxLinks || (links%256 == 0 && time.Now().After(deadline)) {
				sortByPID(found)
				return found, ErrScanLimit
			}
			links++
			target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !slices.Contains(targets, target) {
				continue
			}
			p := Process{PID: pid}
			if comm, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
				p.Comm = strings.TrimSuffix(string(comm), "\n")
			}
			p.Exe, _ = os.Readlink(filepath.Join(dir, "exe"))
			found = append(found, p)
			break
		}
	}
	sortByPID(found)
	return found, nil
}

func sortByPID(ps []Process) {
	slices.SortFunc(ps, func(a, b Process) int { return a.PID - b.PID })
}
