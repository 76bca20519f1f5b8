// Package atomicfile replaces files so that a reader, or a crash, sees
// the old content or the new, never half of it: renameio writes a
// temporary file beside the target, syncs it and renames it over.
package atomicfile

import (
	"os"

	"github.com/google/renameio/v2"
)

// Write replaces path with data, with mode perm whatever the umask and
// whatever the file it replaces had: a symbolic link at path is
// replaced, not written through.
func Write(path string, data []byte, perm os.FileMode) error {
	f, err := renameio.NewPendingFile(path, renameio.WithStaticPermissions(perm))
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.CloseAtomicallyReplace()
}
