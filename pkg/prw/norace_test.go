//go:build !race

package prw

const raceEnabled = false
