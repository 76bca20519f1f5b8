package loader

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Limits on what an archive may hold. A GeoIP2 City database is about
// 130 MiB; the caps leave room for growth and stop a decompression bomb.
const (
	defaultMaxArchive  = 1 << 30 // compressed download
	defaultMaxDatabase = 2 << 30 // the .mmdb inside
	maxOtherEntries    = 64 << 20
	maxEntries         = 64
)

// errTruncated is wrapped when an archive ends early.
var errTruncated = errors.New("the archive is truncated")

// extractMMDB reads a MaxMind tar.gz from r and copies the one regular
// file named <edition>.mmdb (at any depth: MaxMind puts it in
// <edition>_<date>/) to w. Nothing from the archive decides where anything
// is written; still, an archive with an absolute path, a ".." or a link
// where the database should be is refused whole, because no honest
// archive has one. Sizes are capped: the database at maxDB, all the
// other entries together at maxOther.
func extractMMDB(r io.Reader, edition string, w io.Writer, maxDB, maxOther int64) (int64, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("%w: it ends before its gzip header", errTruncated)
		}
		return 0, fmt.Errorf("not a gzip archive: %w", err)
	}
	defer zr.Close()
	// Everything read through tr counts against the caps.
	budget := &io.LimitedReader{R: zr, N: maxDB + maxOther}
	tr := tar.NewReader(budget)
	want := edition + ".mmdb"
	var (
		found   int64 = -1
		names   []string
		entries int
	)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, archiveError(err, budget)
		}
		entries++
		if entries > maxEntries {
			return 0, fmt.Errorf("the archive has more than %d entries; a MaxMind archive has a handful", maxEntries)
		}
		name := hdr.Name
		if !localPath(name) {
			return 0, fmt.Errorf("archive entry %q points outside the archive's directory; refusing the archive", name)
		}
		names = append(names, name)
		if path.Base(path.Clean(name)) != want {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return 0, fmt.Errorf("archive entry %q is not a regular file (type %q); refusing the archive", name, hdr.Typeflag)
		}
		if found >= 0 {
			return 0, fmt.Errorf("the archive holds %s twice; refusing it", want)
		}
		if hdr.Size > maxDB {
			return 0, fmt.Errorf("%s in the archive is %d bytes, over the cap of %d", want, hdr.Size, maxDB)
		}
		n, err := io.Copy(w, tr)
		if err != nil {
			return 0, archiveError(err, budget)
		}
		found = n
	}
	// Read to the end of the gzip stream, so that its checksum is checked.
	if _, err := io.Copy(io.Discard, budget); err != nil {
		return 0, archiveError(err, budget)
	}
	if budget.N <= 0 {
		return 0, fmt.Errorf("the archive decompresses to more than %d bytes; refusing it", maxDB+maxOther)
	}
	if found < 0 {
		return 0, fmt.Errorf("the archive holds no %s (it holds %s); is the edition name right?", want, strings.Join(names, ", "))
	}
	return found, nil
}

func archiveError(err error, budget *io.LimitedReader) error {
	switch {
	case budget.N <= 0:
		return errors.New("the archive decompresses to more than its caps allow; refusing it")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w (unexpected end of data)", errTruncated)
	}
	return fmt.Errorf("reading the archive: %w", err)
}

// localPath reports whether a tar entry's name stays inside the
// archive's directory: relative, no ".." element, no backslash (a
// separator elsewhere), no NUL.
func localPath(name string) bool {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsAny(name, "\\\x00") {
		return false
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return false
		}
	}
	return true
}
