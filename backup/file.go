package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Data file format (version 1): the header fileMagic, then one record per
// version: a uvarint length and that many bytes of a marshalled
// rspb.ExportedVersion (client key, value, timestamp, deleted), in key
// order. The manifest holds each file's size, SHA-256 and counts.
const fileMagic = "RANGESTORE-BACKUP-DATA-1\n"

// maxRecordBytes bounds one record when reading (a key and a value within
// the node limits and their framing fit far below it).
const maxRecordBytes = 64 << 20

// FileError is a data file that is missing, truncated, corrupted or does
// not match the manifest; it names the file.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return fmt.Sprintf("backup file %s: %v", e.Path, e.Err) }
func (e *FileError) Unwrap() error { return e.Err }

// fileWriter writes one data file and computes its manifest entry.
type fileWriter struct {
	f     *os.File
	buf   *bufio.Writer
	sum   hash.Hash
	entry File
	lenb  [binary.MaxVarintLen64]byte
}

func createDataFile(dir, name string) (*fileWriter, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	w := &fileWriter{f: f, sum: sha256.New(), entry: File{Name: name}}
	w.buf = bufio.NewWriterSize(io.MultiWriter(f, w.sum), 256<<10)
	if _, err := w.buf.WriteString(fileMagic); err != nil {
		_ = f.Close()
		return nil, err
	}
	w.entry.Size = int64(len(fileMagic))
	return w, nil
}

func (w *fileWriter) add(v *rspb.ExportedVersion) error {
	data, err := proto.Marshal(v)
	if err != nil {
		return err
	}
	n := binary.PutUvarint(w.lenb[:], uint64(len(data)))
	if _, err := w.buf.Write(w.lenb[:n]); err != nil {
		return err
	}
	if _, err := w.buf.Write(data); err != nil {
		return err
	}
	w.entry.Size += int64(n + len(data))
	if w.entry.Keys == 0 {
		w.entry.FirstKey = append([]byte(nil), v.Key...)
	}
	w.entry.LastKey = append(w.entry.LastKey[:0], v.Key...)
	w.entry.Keys++
	if v.Deleted {
		w.entry.Deleted++
	}
	return nil
}

// finish flushes and syncs the file and returns its manifest entry.
func (w *fileWriter) finish() (File, error) {
	if err := w.buf.Flush(); err != nil {
		_ = w.f.Close()
		return File{}, err
	}
	if err := w.f.Sync(); err != nil {
		_ = w.f.Close()
		return File{}, err
	}
	if err := w.f.Close(); err != nil {
		return File{}, err
	}
	w.entry.SHA256 = hex.EncodeToString(w.sum.Sum(nil))
	return w.entry, nil
}

func (w *fileWriter) abort() { _ = w.f.Close() }

// checkFile checks one data file against its manifest entry: it exists,
// has the recorded size and SHA-256, and its records parse, in key order,
// within the recorded keys and counts. Every failure is a *FileError.
func checkFile(dir string, f File) error {
	path := filepath.Join(dir, f.Name)
	fail := func(format string, args ...any) error {
		return &FileError{Path: path, Err: fmt.Errorf(format, args...)}
	}
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fail("missing (the manifest lists it)")
	}
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	if st.Size() < f.Size {
		return fail("truncated: %d bytes, the manifest says %d", st.Size(), f.Size)
	}
	if st.Size() > f.Size {
		return fail("%d bytes, longer than the %d the manifest says", st.Size(), f.Size)
	}
	h := sha256.New()
	in, err := os.Open(path)
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	_, err = io.Copy(h, in)
	_ = in.Close()
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		return fail("corrupted: SHA-256 %s, the manifest says %s", got, f.SHA256)
	}
	var keys, deleted int64
	var last []byte
	err = readRecords(path, func(v *rspb.ExportedVersion) error {
		if keys > 0 && bytes.Compare(last, v.Key) >= 0 {
			return fmt.Errorf("key %q is not after %q", v.Key, last)
		}
		if bytes.Compare(v.Key, f.FirstKey) < 0 || bytes.Compare(v.Key, f.LastKey) > 0 {
			return fmt.Errorf("key %q lies outside the manifest's %q..%q", v.Key, f.FirstKey, f.LastKey)
		}
		last = append(last[:0], v.Key...)
		keys++
		if v.Deleted {
			deleted++
		}
		return nil
	})
	if err != nil {
		return err
	}
	if keys != f.Keys || deleted != f.Deleted {
		return fail("%d versions (%d deleted), the manifest says %d (%d deleted)", keys, deleted, f.Keys, f.Deleted)
	}
	return nil
}

// readRecords calls fn for each record of the data file at path. A bad
// header or record, or an error from fn, is a *FileError naming the file
// and the record's offset.
func readRecords(path string, fn func(*rspb.ExportedVersion) error) error {
	in, err := os.Open(path)
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	defer in.Close()
	r := bufio.NewReaderSize(in, 256<<10)
	head := make([]byte, len(fileMagic))
	if _, err := io.ReadFull(r, head); err != nil || string(head) != fileMagic {
		return &FileError{Path: path, Err: errors.New("not a rangestore backup data file (bad header)")}
	}
	off := int64(len(fileMagic))
	var buf []byte
	for {
		n, err := binary.ReadUvarint(r)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil || n > maxRecordBytes {
			return &FileError{Path: path, Err: fmt.Errorf("record at offset %d: bad length (truncated or corrupted)", off)}
		}
		if uint64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return &FileError{Path: path, Err: fmt.Errorf("record at offset %d: %d bytes announced, file ends first (truncated)", off, n)}
		}
		v := &rspb.ExportedVersion{}
		if err := proto.Unmarshal(buf, v); err != nil {
			return &FileError{Path: path, Err: fmt.Errorf("record at offset %d: %w", off, err)}
		}
		if err := fn(v); err != nil {
			return &FileError{Path: path, Err: fmt.Errorf("record at offset %d: %w", off, err)}
		}
		off += int64(binary.PutUvarint(make([]byte, binary.MaxVarintLen64), n)) + int64(n)
	}
}
