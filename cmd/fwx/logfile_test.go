package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogFileRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fw.log")
	f, err := openLogFile(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec := strings.Repeat("x", 39) + "\n" // 40 bytes: two fit in 100, not three
	for range 9 {
		if _, err := f.Write([]byte(rec)); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]int{"fw.log": 40, "fw.log.1": 80, "fw.log.2": 80} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != int64(want) {
			t.Errorf("%s: %d bytes, want %d", name, st.Size(), want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "fw.log.3")); !os.IsNotExist(err) {
		t.Errorf("fw.log.3 exists beyond the 2 kept: %v", err)
	}
}

func TestLogFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fw.log")
	f, err := openLogFile(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write([]byte("one\n"))
	if err := os.Rename(path, path+".old"); err != nil { // as logrotate does
		t.Fatal(err)
	}
	f.Write([]byte("two\n")) // still the moved file
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("three\n"))
	old, _ := os.ReadFile(path + ".old")
	cur, _ := os.ReadFile(path)
	if string(old) != "one\ntwo\n" || string(cur) != "three\n" {
		t.Errorf("old %q, new %q", old, cur)
	}
	f.Close()
	if _, err := f.Write([]byte("x")); err == nil {
		t.Error("write after Close succeeded")
	}
}
