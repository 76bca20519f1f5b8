package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/reghost/reghost/internal/offheap"
	"github.com/reghost/reghost/internal/rules"
)

// records is what the File store holds in memory: each override's ID and
// its line of the file, sorted by ID, in two arrays off the Go heap
// (internal/offheap). Reads decode the lines they return. Held as Go
// values, a hundred thousand overrides were 36 MB of heap, and the heap's
// size sets how far the collector lets request garbage spread before
// collecting (see offheap). A records is immutable: a write builds the
// next one and swaps it in once the file is written.
type records struct {
	text  []byte   // every ID and line, back to back
	index []record // by ID
}

type record struct{ id, line span }

// span is a range of records.text.
type span struct{ off, end uint32 }

// maxText is how much text records can index.
const maxText = math.MaxUint32

// newRecords builds records from IDs and lines that are sorted by ID.
func newRecords(n int, each func(yield func(id string, line []byte))) (*records, error) {
	size := 0
	each(func(id string, line []byte) { size += len(id) + len(line) })
	if size > maxText {
		return nil, fmt.Errorf("%d bytes of overrides, more than the %d the embedded store can hold", size, maxText)
	}
	r := new(records)
	r.text = offheap.Make[byte](r, size)
	r.index = offheap.Make[record](r, n)
	at, i := uint32(0), 0
	put := func(s []byte) span {
		end := at + uint32(copy(r.text[at:], s))
		sp := span{at, end}
		at = end
		return sp
	}
	each(func(id string, line []byte) {
		r.index[i] = record{id: put(unsafe.Slice(unsafe.StringData(id), len(id))), line: put(line)}
		i++
	})
	return r, nil
}

func (r *records) len() int { return len(r.index) }

// find returns where id is or would be.
func (r *records) find(id string) (int, bool) {
	i, j := 0, len(r.index)
	for i < j {
		m := int(uint(i+j) >> 1)
		if strings.Compare(r.id(m), id) < 0 {
			i = m + 1
		} else {
			j = m
		}
	}
	found := i < len(r.index) && r.id(i) == id
	runtime.KeepAlive(r)
	return i, found
}

// id and line return r's own memory: neither may outlive r, nor be kept
// by the caller.
func (r *records) id(i int) string {
	s := r.index[i].id
	return unsafe.String(unsafe.SliceData(r.text[s.off:]), s.end-s.off)
}

func (r *records) line(i int) []byte {
	s := r.index[i].line
	return r.text[s.off:s.end:s.end]
}

// override decodes the override at i.
func (r *records) override(i int) (rules.Override, error) {
	var o rules.Override
	err := json.Unmarshal(r.line(i), &o)
	runtime.KeepAlive(r)
	if err != nil {
		// Every line was encoded by this process.
		return o, fmt.Errorf("store: decoding override %d of %d: %w", i, r.len(), err)
	}
	return o, nil
}

// splice returns r with the records from i to j replaced by the override
// with the ID and line, or by nothing if line is nil.
func (r *records) splice(i, j int, id string, line []byte) (*records, error) {
	n := r.len() - (j - i)
	if line != nil {
		n++
	}
	s, err := newRecords(n, func(yield func(string, []byte)) {
		for k := range i {
			yield(r.id(k), r.line(k))
		}
		if line != nil {
			yield(id, line)
		}
		for k := j; k < r.len(); k++ {
			yield(r.id(k), r.line(k))
		}
	})
	runtime.KeepAlive(r)
	return s, err
}

// encode renders the store file with version v: one override per line,
// so that the file reads and diffs well.
func (r *records) encode(b *bytes.Buffer, v uint64) {
	b.Reset()
	b.Grow(64 + len(r.text) + 6*r.len())
	b.WriteString("{\n  \"version\": ")
	b.WriteString(strconv.FormatUint(v, 10))
	b.WriteString(",\n  \"overrides\": [")
	for i := range r.len() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		b.Write(r.line(i))
	}
	runtime.KeepAlive(r)
	if r.len() > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("]\n}\n")
}

// encodeOverride renders o as one line of the file.
func encodeOverride(o rules.Override) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(o); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}
