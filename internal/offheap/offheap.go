// Package offheap keeps large arrays of plain values (no pointers) in
// memory mapped from the kernel, outside the Go heap, for the tables that
// reghost builds once and reads on every request: GeoIP and cloud ranges,
// compiled overrides, the embedded store's records.
//
// Why: the collector sets its next goal in proportion to the live heap
// (GOGC). Tens of megabytes of tables on the heap make every cycle let
// the heap grow by as much again or more before collecting, so the
// memory each request allocates comes from a range far larger than the
// caches. Mapped here, tables are also on huge pages from the start,
// where on the heap they were only partly, by MADV_COLLAPSE (the
// process had 8 MB on huge pages, against 30 MB now). Measured under load (bench/run's data, no overrides):
// the same server served 0.82x a constant-redirect server's requests per
// second with its IPv4 range tables on the heap, and 1.01x with them
// here; those runs do not tell the two causes apart. VictoriaMetrics'
// fastcache keeps its buckets off the heap for the first reason.
//
// The memory of a slice from Make is freed once its owner, a heap object
// chosen by the caller, can no longer be reached. The rules that keep this
// safe:
//
//   - T holds no pointers: the collector does not see this memory, so a
//     pointer kept here would not keep its target alive. Make panics
//     otherwise.
//   - Only the owner holds the slice, and nothing taken from it (a
//     sub-slice, a string over its bytes) outlives the owner: copy values
//     out.
//   - A method of the owner that reads the slice ends with
//     runtime.KeepAlive(owner), so that the owner stays reachable until
//     the last read even when the compiler has no further use for it.
package offheap

import (
	"fmt"
	"reflect"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// hugePage is the size of a transparent huge page on amd64 and arm64.
// Mappings of at least one are aligned to it and asked to be backed by
// huge pages: a table read at random then misses the TLB far less often.
const hugePage = 2 << 20

// smallest is the size below which arrays stay on the Go heap.
const smallest = 4 << 10

var mapped atomic.Int64

// Bytes is how much memory this package has mapped and not yet freed, for
// the process's metrics: it is part of the resident size but not of the
// Go heap's figures.
func Bytes() int64 { return mapped.Load() }

// Make returns a zeroed slice of n Ts outside the Go heap, freed once
// owner is unreachable; under 4 KiB it comes from the heap. n of 0
// returns nil. See the package comment for the rules, which hold either
// way.
func Make[T any, O any](owner *O, n int) []T {
	if n < 0 {
		panic(fmt.Sprintf("offheap: negative length %d", n))
	}
	if n == 0 {
		return nil
	}
	t := reflect.TypeFor[T]()
	if hasPointers(t) {
		panic(fmt.Sprintf("offheap: %v holds pointers", t))
	}
	size := int(t.Size()) * n
	if size < smallest {
		// A mapping would take a whole page; on the heap an array this
		// small is one object the collector need not look into.
		return make([]T, n)
	}
	m := mapMemory(size)
	mapped.Add(int64(len(m.region)))
	runtime.AddCleanup(owner, release, m)
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(m.data))), n)
}

// Copy returns an off-heap copy of s owned by owner.
func Copy[T any, O any](owner *O, s []T) []T {
	c := Make[T](owner, len(s))
	copy(c, s)
	return c
}

// String returns an off-heap copy of s owned by owner. A string over
// off-heap bytes must not outlive owner either: clone what escapes.
func String[O any](owner *O, s string) string {
	b := Copy(owner, unsafe.Slice(unsafe.StringData(s), len(s)))
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// memory is one mapping: region as mapped, data the part handed out.
type memory struct{ region, data []byte }

func release(m memory) {
	mapped.Add(-int64(len(m.region)))
	unmapMemory(m)
}

// hasPointers reports whether a value of type t holds pointers the
// collector would need to see.
func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	default: // pointers, strings, slices, maps, channels, funcs, interfaces
		return true
	}
}
