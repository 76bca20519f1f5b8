package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/reghost/reghost/internal/rules"
)

// records is what the File store holds in memory: each override's ID and
// its line of the file, sorted by ID. Reads decode the lines they return.
// A records is immutable: a write builds the next one and swaps it in
// once the file is written.
type records struct {
	items []record // by ID
}

type record struct {
	id   string
	line []byte
}

// newRecords builds records from IDs and lines that are sorted by ID.
func newRecords(n int, each func(yield func(id string, line []byte))) *records {
	r := &records{items: make([]record, 0, n)}
	each(func(id string, line []byte) { r.items = append(r.items, record{id, line}) })
	return r
}

func (r *records) len() int { return len(r.items) }

// find returns where id is or would be.
func (r *records) find(id string) (int, bool) {
	return slices.BinarySearchFunc(r.items, id, func(x record, id string) int { return strings.Compare(x.id, id) })
}

func (r *records) id(i int) string   { return r.items[i].id }
func (r *records) line(i int) []byte { return r.items[i].line }

// override decodes the override at i.
func (r *records) override(i int) (rules.Override, error) {
	var o rules.Override
	if err := json.Unmarshal(r.line(i), &o); err != nil {
		// Every line was encoded by this process.
		return o, fmt.Errorf("store: decoding override %d of %d: %w", i, r.len(), err)
	}
	return o, nil
}

// splice returns r with the records from i to j replaced by the override
// with the ID and line, or by nothing if line is nil.
func (r *records) splice(i, j int, id string, line []byte) *records {
	n := r.len() - (j - i)
	if line != nil {
		n++
	}
	return newRecords(n, func(yield func(string, []byte)) {
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
}

// encode renders the store file with version v: one override per line,
// so that the file reads and diffs well.
func (r *records) encode(b *bytes.Buffer, v uint64) {
	b.Reset()
	size := 64
	for _, it := range r.items {
		size += len(it.line) + 6
	}
	b.Grow(size)
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
