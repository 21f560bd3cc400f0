package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
)

// logFile is fwx run's --fwlog file. It can be reopened under its name,
// after logrotate moved it away (SIGUSR1), and it rotates itself when it
// would grow past a size: FILE becomes FILE.1, FILE.1 becomes FILE.2, and
// so on, the oldest beyond the number kept is deleted. It is safe for
// concurrent use.
type logFile struct {
	path    string
	maxSize int64
	keep    int

	mu     sync.Mutex
	f      *os.File // nil after a failed open: the next write retries
	size   int64
	closed bool
}

// openLogFile opens (creating, appending) the log file at path. maxSize > 0
// rotates it before a write would take it past maxSize bytes, keeping keep
// old files (at least one).
func openLogFile(path string, maxSize int64, keep int) (*logFile, error) {
	lf := &logFile{path: path, maxSize: maxSize, keep: max(keep, 1)}
	if err := lf.open(); err != nil {
		return nil, err
	}
	return lf, nil
}

func (lf *logFile) open() error {
	f, err := os.OpenFile(lf.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	lf.f, lf.size = f, st.Size()
	return nil
}

// Write implements io.Writer. A record never straddles two files.
func (lf *logFile) Write(p []byte) (int, error) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.closed {
		return 0, os.ErrClosed
	}
	if lf.f == nil {
		if err := lf.open(); err != nil {
			return 0, err
		}
	}
	if lf.maxSize > 0 && lf.size > 0 && lf.size+int64(len(p)) > lf.maxSize {
		if err := lf.rotateLocked(); err != nil {
			return 0, err
		}
	}
	n, err := lf.f.Write(p)
	lf.size += int64(n)
	return n, err
}

// rotateLocked shifts the old files up by one and starts a new file.
func (lf *logFile) rotateLocked() error {
	lf.f.Close()
	lf.f = nil
	os.Remove(lf.name(lf.keep))
	for i := lf.keep - 1; i >= 1; i-- {
		os.Rename(lf.name(i), lf.name(i+1)) // a missing one is no error
	}
	if err := os.Rename(lf.path, lf.name(1)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("rotate %s: %w", lf.path, err)
	}
	return lf.open()
}

func (lf *logFile) name(i int) string { return lf.path + "." + strconv.Itoa(i) }

// Reopen closes the file and opens path again: after an outside tool
// renamed it, writing continues in a new file of that name.
func (lf *logFile) Reopen() error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.closed {
		return os.ErrClosed
	}
	if lf.f != nil {
		lf.f.Close()
		lf.f = nil
	}
	return lf.open()
}

// Close closes the file.
func (lf *logFile) Close() error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	lf.closed = true
	if lf.f == nil {
		return nil
	}
	err := lf.f.Close()
	lf.f = nil
	return err
}
