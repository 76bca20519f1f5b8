package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/reghost/reghost/internal/rules"
)

// fileData is the file's format. Unknown fields are refused when reading,
// so that a file written by a newer reghost is not silently truncated by
// an older one.
type fileData struct {
	Version   uint64           `json:"version"`
	Overrides []rules.Override `json:"overrides"`
}

// parseLegacy decodes the JSON file the embedded store kept before it
// moved to bbolt, strictly, for migrating it: its version and
// overrides.
func parseLegacy(data []byte) (uint64, []rules.Override, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return 0, nil, errors.New("file is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var fd fileData
	if err := dec.Decode(&fd); err != nil {
		return 0, nil, jsonError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return 0, nil, fmt.Errorf("%s: data after the end of the store object", position(data, dec.InputOffset()))
	}
	seen := make(map[string]bool, len(fd.Overrides))
	for i, o := range fd.Overrides {
		switch {
		case o.ID == "":
			return 0, nil, fmt.Errorf("overrides[%d]: empty id", i)
		case seen[o.ID]:
			return 0, nil, fmt.Errorf("override id %q appears more than once", o.ID)
		}
		seen[o.ID] = true
	}
	return fd.Version, fd.Overrides, nil
}

// jsonError adds the line and column to a decoding error.
func jsonError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("%s: invalid JSON: %w", position(data, syn.Offset), err)
	case errors.As(err, &typ):
		return fmt.Errorf("%s: %w", position(data, typ.Offset), err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: invalid JSON: file ends early (truncated?)", position(data, int64(len(data))))
	}
	return fmt.Errorf("invalid store file: %w", err)
}

// position renders a byte offset as "line L, column C (byte N)".
func position(data []byte, off int64) string {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := off - int64(bytes.LastIndexByte(before, '\n'))
	return "line " + strconv.Itoa(line) + ", column " + strconv.FormatInt(col, 10) + " (byte " + strconv.FormatInt(off, 10) + ")"
}
