//go:build race

package chaos

// raceEnabled: the suite runs under the race detector, so the binary it
// builds is race-instrumented too (a data race in a daemon then fails it).
const raceEnabled = true
