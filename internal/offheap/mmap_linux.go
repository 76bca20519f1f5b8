package offheap

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapMemory maps size bytes of zeroed anonymous memory. A mapping of at
// least one huge page starts on a huge-page boundary and is advised to be
// backed by huge pages (where transparent huge pages are off, the advice
// changes nothing).
func mapMemory(size int) memory {
	length := size
	huge := size >= hugePage
	if huge {
		length = (size+hugePage-1)&^(hugePage-1) + hugePage // room to align
	}
	region, err := unix.Mmap(-1, 0, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		// As the runtime does when the heap cannot grow.
		panic(fmt.Sprintf("offheap: mapping %d bytes: %v", length, err))
	}
	data := region[:size:size]
	if huge {
		off := (hugePage - uintptr(unsafe.Pointer(&region[0]))%hugePage) % hugePage
		aligned := region[off : off+uintptr((size+hugePage-1)&^(hugePage-1))]
		_ = unix.Madvise(aligned, unix.MADV_HUGEPAGE)
		data = aligned[:size:size]
	}
	return memory{region: region, data: data}
}

func unmapMemory(m memory) {
	if err := unix.Munmap(m.region); err != nil {
		panic(fmt.Sprintf("offheap: unmapping %d bytes: %v", len(m.region), err))
	}
}
