package geo

import "time"

// SetWatchTimings shortens Run's debounce and poll intervals for tests. Call
// it before Run.
func SetWatchTimings(d *DB, debounce, poll time.Duration) {
	d.debounce, d.poll = debounce, poll
}

// ContinentInTable reports whether ContinentOf answers country from its
// own table rather than from CLDR's fallback, which the tests compare it
// with.
func ContinentInTable(country string) bool {
	i := codeIndex(country)
	return i != noCode && continentOf[i] != noCode
}
