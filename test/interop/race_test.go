//go:build race

package interop

// raceEnabled makes the tests build authd with -race as well, so data races
// in the daemon show up (and fail the clean-exit check) during interop runs.
const raceEnabled = true
