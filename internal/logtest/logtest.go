// Package logtest has what tests need to read output (a logger's, a
// child process's) while other goroutines are still writing it.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer that is safe to write from several goroutines
// and to read at the same time.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what has been written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
