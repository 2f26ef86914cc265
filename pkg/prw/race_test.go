//go:build race

package prw

// raceEnabled: built with -race, under which the compiler does not turn
// append(b, make([]byte, n)...) into growing b in place, so that code
// allocates there and allocation counts are not this package's.
const raceEnabled = true
