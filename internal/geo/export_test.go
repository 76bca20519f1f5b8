package geo

import "time"

// SetWatchTimings shortens Run's debounce and poll intervals for tests. Call
// it before Run.
func SetWatchTimings(d *DB, debounce, poll time.Duration) {
	d.debounce, d.poll = debounce, poll
}
