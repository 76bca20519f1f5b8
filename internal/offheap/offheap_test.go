package offheap

import (
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

type owner struct{ data []uint64 }

type record struct {
	a    uint32
	b    [3]uint16
	flag bool
}

func TestMakeIsZeroedAndWritable(t *testing.T) {
	o := new(owner)
	for _, n := range []int{1, 1000, 3 << 20 / 8} { // the last spans huge pages
		s := Make[uint64](o, n)
		if len(s) != n || cap(s) != n {
			t.Fatalf("Make(%d): len %d cap %d", n, len(s), cap(s))
		}
		for i, v := range s {
			if v != 0 {
				t.Fatalf("Make(%d)[%d] = %d, want 0", n, i, v)
			}
			s[i] = uint64(i)
		}
		if s[n-1] != uint64(n-1) {
			t.Fatalf("Make(%d): last element reads %d", n, s[n-1])
		}
	}
	rs := Make[record](o, 10)
	rs[9] = record{a: 7, b: [3]uint16{1, 2, 3}, flag: true}
	if rs[9].b[2] != 3 || !rs[9].flag {
		t.Fatalf("struct element reads back %+v", rs[9])
	}
	if s := Make[uint64](o, 0); s != nil {
		t.Fatalf("Make(0) = %v, want nil", s)
	}
	before := Bytes()
	if small := Make[uint32](o, 100); len(small) != 100 || Bytes() > before {
		t.Fatalf("Make of 400 bytes: len %d, mapped %d bytes; want 100 from the heap", len(small), Bytes()-before)
	}
	runtime.KeepAlive(o)
}

func TestMakeRefusesPointers(t *testing.T) {
	type withString struct {
		n uint32
		s string
	}
	type withSlice struct{ b [2][]byte }
	for name, mk := range map[string]func(){
		"string":          func() { Make[string](new(owner), 1) },
		"pointer":         func() { Make[*int](new(owner), 1) },
		"struct w/string": func() { Make[withString](new(owner), 1) },
		"array of slices": func() { Make[withSlice](new(owner), 1) },
		"map":             func() { Make[map[int]int](new(owner), 1) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "holds pointers") {
					t.Fatalf("recovered %v, want a panic saying the type holds pointers", r)
				}
			}()
			mk()
		})
	}
}

func TestCopyAndString(t *testing.T) {
	o := new(owner)
	src := []uint32{1, 2, 3}
	c := Copy(o, src)
	src[0] = 9
	if c[0] != 1 || len(c) != 3 {
		t.Fatalf("Copy = %v, want [1 2 3] independent of the source", c)
	}
	s := String(o, "cidr:192.168.0.0/24")
	if s != "cidr:192.168.0.0/24" {
		t.Fatalf("String = %q", s)
	}
	if String(o, "") != "" {
		t.Fatal("String of empty is not empty")
	}
	runtime.KeepAlive(o)
}

// The memory is given back once its owner is unreachable; until then it
// stays mapped.
func TestFreedWithOwner(t *testing.T) {
	const n = 4 << 20 / 8
	// Every other test's owners are unreachable by now: let their memory
	// go first, so that only this test's moves Bytes.
	waitFreed(t, 0)
	before := Bytes()
	o := &owner{}
	o.data = Make[uint64](o, n)
	o.data[n-1] = 1
	if got := Bytes() - before; got < n*8 {
		t.Fatalf("Bytes grew by %d after mapping %d", got, n*8)
	}
	runtime.GC()
	if got := Bytes() - before; got < n*8 {
		t.Fatalf("memory of a reachable owner was freed: Bytes grew by only %d", got)
	}
	runtime.KeepAlive(o)
	o = nil
	waitFreed(t, before)
}

// waitFreed collects until no more than want bytes are mapped.
func waitFreed(t *testing.T, want int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); Bytes() > want; {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still mapped 10 s after their owners became unreachable, want %d", Bytes(), want)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLargeMappingsAreHugePageAligned(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("mappings are heap memory outside Linux")
	}
	o := new(owner)
	s := Make[byte](o, 3*hugePage+5)
	if p := uintptr(unsafe.Pointer(&s[0])); p%hugePage != 0 {
		t.Fatalf("a %d-byte mapping starts at %#x, not on a huge page", len(s), p)
	}
	s[len(s)-1] = 1
	runtime.KeepAlive(o)
}
