package iprange

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// A table of GeoIP ranges is megabytes read at random, a page apart
// each time: with 4 KiB pages nearly every lookup also misses the TLB and
// walks the page tables. Tables of at least one 2 MiB huge page are
// therefore laid out on huge-page boundaries and the kernel is asked to
// back them with huge pages (MADV_COLLAPSE, Linux 6.1+; where transparent
// huge pages are off or it fails, nothing changes). Alternating A/B load
// tests (bench/ab, both orders): about 2% less CPU a request. The cost is
// up to two huge pages of padding a table.
const hugePage = 2 << 20

// makeEnts allocates n entries, on whole huge pages when they fill at
// least one.
func makeEnts(n int) []uint64 {
	if n*8 < hugePage {
		return make([]uint64, n)
	}
	pad := hugePage / 8
	// Whole huge pages, so that the last entries are in one too.
	buf := make([]uint64, (n+pad-1)/pad*pad+pad)
	off := 0
	if r := uintptr(unsafe.Pointer(&buf[0])) % hugePage; r != 0 {
		off = int((hugePage - r) / 8)
	}
	return buf[off : off+n : off+n]
}

// adviseHuge asks for the huge pages wholly inside e to be collapsed.
func adviseHuge(e []uint64) {
	if len(e)*8 < hugePage {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&e[0])), len(e)*8)
	off := (hugePage - uintptr(unsafe.Pointer(&b[0]))%hugePage) % hugePage
	if off >= uintptr(len(b)) {
		return
	}
	b = b[off:]
	if b = b[:len(b)&^(hugePage-1)]; len(b) > 0 {
		_ = unix.Madvise(b, unix.MADV_COLLAPSE)
	}
}
