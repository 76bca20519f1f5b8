//go:build !linux

package offheap

// Elsewhere the memory comes from the Go heap: correct, without the gain.
func mapMemory(size int) memory {
	b := make([]byte, size)
	return memory{region: b, data: b}
}

func unmapMemory(memory) {}
