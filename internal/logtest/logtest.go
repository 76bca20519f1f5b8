// Package logtest has what tests need to read output (a logger's, a
// child process's, a server's) while other goroutines are still writing
// it.
package logtest

import (
	"bytes"
	"encoding/json"
	"strings"
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

// ServingAddrs returns the listeners' addresses from the line a reghost
// server logs once it is listening ("reghost serving"), which tells a
// test the ports the kernel picked for a config's port 0; ok is false
// until the line is there.
func ServingAddrs(output string) (public, admin string, ok bool) {
	for line := range strings.Lines(output) {
		if !strings.Contains(line, `"msg":"reghost serving"`) {
			continue
		}
		var serving struct {
			Listen      string `json:"listen"`
			AdminListen string `json:"admin_listen"`
		}
		if json.Unmarshal([]byte(line), &serving) != nil {
			return "", "", false
		}
		return serving.Listen, serving.AdminListen, true
	}
	return "", "", false
}
