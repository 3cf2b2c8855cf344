package catalog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// trashSuffix names the directory a catalog is renamed to before its files
// are deleted, so a crash in the middle of Remove never leaves a partial
// catalog behind under the catalog's name (pebble would replay a stray WAL
// of it into a new catalog).
const trashSuffix = ".removing"

// Remove deletes the catalog in dir, for a rebuild. It refuses (deleting
// nothing) a directory holding anything pebble did not write, and a catalog
// open in this process or locked by another (ErrInUse). A missing dir is
// not an error, so a rebuild interrupted by a crash can run again.
//
// The directory is first renamed to dir+".removing" (the rename is made
// durable), then deleted; a leftover dir+".removing" from an interrupted
// Remove is deleted too.
func Remove(dir string) error {
	if err := removeTrash(dir + trashSuffix); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("catalog: remove %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("catalog: remove %s: not a directory", dir)
	}
	if err := looksLikeCatalog(dir); err != nil {
		return err
	}
	if registered(dir) {
		return fmt.Errorf("catalog: remove %s: %w: open in this process", dir, ErrInUse)
	}
	// Hold pebble's lock during the rename, so a master starting now
	// either gets the catalog first (and Remove fails) or opens a new one.
	lock := filepath.Join(dir, "LOCK")
	if _, err := os.Stat(lock); err == nil {
		l, err := vfs.Default.Lock(lock)
		if err != nil {
			return fmt.Errorf("catalog: remove %s: %w (by a running master?): %v", dir, ErrInUse, err)
		}
		defer l.Close()
	}
	trash := dir + trashSuffix
	if err := os.Rename(dir, trash); err != nil {
		return fmt.Errorf("catalog: remove %s: %w", dir, err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("catalog: remove %s: %w", dir, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("catalog: remove %s: %w", dir, err)
	}
	return nil
}

// removeTrash deletes what an interrupted Remove left, if it still looks
// like a catalog.
func removeTrash(trash string) error {
	if _, err := os.Stat(trash); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := looksLikeCatalog(trash); err != nil {
		return err
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("catalog: remove %s: %w", trash, err)
	}
	return nil
}

// looksLikeCatalog checks that every entry of dir is a file pebble writes,
// so Remove cannot delete a directory given by mistake (a home directory, a
// journal).
func looksLikeCatalog(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("catalog: remove %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() || !pebbleFile(e.Name()) {
			return fmt.Errorf("catalog: remove %s: refusing: %q is not a file of a pebble catalog", dir, e.Name())
		}
	}
	return nil
}

// pebbleFile reports whether name is one of the files pebble keeps in its
// directory: LOCK, CURRENT (old format), MANIFEST-N, OPTIONS-N, N.log,
// N.sst, N.blob, marker.* (atomic markers), and *.dbtmp (temporary files).
func pebbleFile(name string) bool {
	switch name {
	case "LOCK", "CURRENT":
		return true
	}
	if strings.HasPrefix(name, "marker.") || strings.HasSuffix(name, ".dbtmp") {
		return true
	}
	for _, p := range []string{"MANIFEST-", "OPTIONS-"} {
		if n, ok := strings.CutPrefix(name, p); ok {
			return digits(n)
		}
	}
	for _, s := range []string{".log", ".sst", ".blob"} {
		if n, ok := strings.CutSuffix(name, s); ok {
			return digits(n)
		}
	}
	return false
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
