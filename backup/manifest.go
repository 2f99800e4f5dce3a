package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/proto/rspb"
)

// FormatVersion is the version of the manifest and data file formats this
// code writes and reads.
const FormatVersion = 1

// ManifestName is the manifest's file name in a backup directory.
const ManifestName = "MANIFEST.json"

// Manifest describes one backup: the span and timestamp it holds, the
// backup it is an incremental of, and its data files.
type Manifest struct {
	Version int `json:"version"`
	// Timestamp: the backup holds the state of the span at it.
	Timestamp Timestamp `json:"timestamp"`
	// StartKey, EndKey: the span of client keys (an empty end: to the end
	// of the keyspace).
	StartKey []byte `json:"start_key"`
	EndKey   []byte `json:"end_key"`
	// Previous is set for an incremental backup: it holds the versions in
	// (Previous.Timestamp, Timestamp], deletions included.
	Previous *Previous `json:"previous,omitempty"`
	// ProtectionID is the protection record that keeps Timestamp readable
	// for the next incremental (released by `backup release` or by the
	// next incremental of the chain).
	ProtectionID string `json:"protection_id"`
	Files        []File `json:"files"`
	// CreatedAt is informational (RFC 3339).
	CreatedAt string `json:"created_at,omitempty"`
}

// Previous names the backup an incremental backup builds on.
type Previous struct {
	Dir       string    `json:"dir"` // absolute path when written
	Timestamp Timestamp `json:"timestamp"`
	// ManifestSHA256 is the checksum of the previous backup's manifest
	// file: restore refuses a chain whose base was replaced.
	ManifestSHA256 string `json:"manifest_sha256"`
}

// File is one data file: its versions, in key order, cover keys in
// [FirstKey, LastKey].
type File struct {
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Keys     int64  `json:"keys"`    // versions in the file, tombstones included
	Deleted  int64  `json:"deleted"` // tombstones among them
	FirstKey []byte `json:"first_key"`
	LastKey  []byte `json:"last_key"`
}

// Timestamp is an HLC timestamp in the manifest.
type Timestamp struct {
	WallTime int64 `json:"wall_time"`
	Logical  int32 `json:"logical"`
}

// KV is the timestamp as a kv.Timestamp.
func (t Timestamp) KV() kv.Timestamp { return kv.Timestamp{WallTime: t.WallTime, Logical: t.Logical} }

// Proto is the timestamp in wire form (nil if empty).
func (t Timestamp) Proto() *rspb.Timestamp {
	if t.IsEmpty() {
		return nil
	}
	return &rspb.Timestamp{WallTime: t.WallTime, Logical: t.Logical}
}

// IsEmpty reports whether t is the zero timestamp.
func (t Timestamp) IsEmpty() bool { return t.WallTime == 0 && t.Logical == 0 }

// Less reports whether t < o.
func (t Timestamp) Less(o Timestamp) bool { return t.KV().Less(o.KV()) }

// String prints t as the CLI prints commit timestamps: @SECONDS.NANOS,LOGICAL.
func (t Timestamp) String() string {
	return fmt.Sprintf("@%d.%09d,%d", t.WallTime/1e9, t.WallTime%1e9, t.Logical)
}

// FromProto converts a wire timestamp.
func FromProto(p *rspb.Timestamp) Timestamp {
	return Timestamp{WallTime: p.GetWallTime(), Logical: p.GetLogical()}
}

// ParseTimestamp reads a timestamp as the CLI prints it (@1700000000.000000123,4,
// with or without the @, the logical part optional) or as wall nanoseconds
// (1700000000000000123).
func ParseTimestamp(s string) (Timestamp, error) {
	in := strings.TrimPrefix(strings.TrimSpace(s), "@")
	bad := func() (Timestamp, error) {
		return Timestamp{}, fmt.Errorf("timestamp %q: want @SECONDS.NANOS[,LOGICAL] (as `kv put` prints) or wall nanoseconds", s)
	}
	var logical int64
	if i := strings.IndexByte(in, ','); i >= 0 {
		l, err := strconv.ParseInt(in[i+1:], 10, 32)
		if err != nil || l < 0 {
			return bad()
		}
		logical, in = l, in[:i]
	}
	var wall int64
	if i := strings.IndexByte(in, '.'); i >= 0 {
		sec, err := strconv.ParseInt(in[:i], 10, 64)
		frac := in[i+1:]
		if err != nil || sec < 0 || len(frac) == 0 || len(frac) > 9 || sec > math.MaxInt64/1_000_000_000-1 {
			return bad()
		}
		ns, err := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
		if err != nil || ns < 0 {
			return bad()
		}
		wall = sec*1e9 + ns
	} else {
		w, err := strconv.ParseInt(in, 10, 64)
		if err != nil || w < 0 {
			return bad()
		}
		wall = w
	}
	t := Timestamp{WallTime: wall, Logical: int32(logical)}
	if t.IsEmpty() {
		return bad()
	}
	return t, nil
}

// fileNamePattern is what data file names look like: no path separators,
// so a manifest can only name files inside its directory.
var fileNamePattern = regexp.MustCompile(`^data-[0-9]{6}\.rsb$`)

// dataFileName is the name of the i-th data file (from 1).
func dataFileName(i int) string { return fmt.Sprintf("data-%06d.rsb", i) }

// Validate checks a manifest's internal consistency (pure: no file is
// read): the format version, timestamps, the span, file names, sizes,
// checksums and key order. The error names the field.
func (m *Manifest) Validate() error {
	if m.Version != FormatVersion {
		return fmt.Errorf("version: %d is not a format this rangestore reads (want %d)", m.Version, FormatVersion)
	}
	if m.Timestamp.IsEmpty() || m.Timestamp.WallTime < 0 || m.Timestamp.Logical < 0 {
		return fmt.Errorf("timestamp: %s is not a valid backup timestamp", m.Timestamp)
	}
	if len(m.EndKey) > 0 && bytes.Compare(m.StartKey, m.EndKey) >= 0 {
		return fmt.Errorf("span: start key %q is not before end key %q", m.StartKey, m.EndKey)
	}
	if p := m.Previous; p != nil {
		if p.Dir == "" {
			return errors.New("previous.dir: empty")
		}
		if p.Timestamp.IsEmpty() || !p.Timestamp.Less(m.Timestamp) {
			return fmt.Errorf("previous.timestamp: %s is not below the backup's timestamp %s", p.Timestamp, m.Timestamp)
		}
		if !isSHA256(p.ManifestSHA256) {
			return fmt.Errorf("previous.manifest_sha256: %q is not a hex SHA-256", p.ManifestSHA256)
		}
	}
	var lastKey []byte
	seen := map[string]bool{}
	for i, f := range m.Files {
		field := fmt.Sprintf("files[%d]", i)
		switch {
		case !fileNamePattern.MatchString(f.Name):
			return fmt.Errorf("%s.name: %q is not a data file name (data-NNNNNN.rsb)", field, f.Name)
		case seen[f.Name]:
			return fmt.Errorf("%s.name: %q is listed twice", field, f.Name)
		case f.Size < int64(len(fileMagic)):
			return fmt.Errorf("%s.size: %d bytes is shorter than the file header", field, f.Size)
		case !isSHA256(f.SHA256):
			return fmt.Errorf("%s.sha256: %q is not a hex SHA-256", field, f.SHA256)
		case f.Keys <= 0 || f.Deleted < 0 || f.Deleted > f.Keys:
			return fmt.Errorf("%s: %d keys with %d deleted is not a valid count (a file holds at least one key)", field, f.Keys, f.Deleted)
		case m.Previous == nil && f.Deleted > 0:
			return fmt.Errorf("%s.deleted: a full backup holds no deletions (got %d)", field, f.Deleted)
		case bytes.Compare(f.FirstKey, f.LastKey) > 0:
			return fmt.Errorf("%s: first key %q is after last key %q", field, f.FirstKey, f.LastKey)
		case i > 0 && bytes.Compare(lastKey, f.FirstKey) >= 0:
			return fmt.Errorf("%s.first_key: %q is not after the previous file's last key %q", field, f.FirstKey, lastKey)
		case bytes.Compare(f.FirstKey, m.StartKey) < 0 || len(m.EndKey) > 0 && bytes.Compare(f.LastKey, m.EndKey) >= 0:
			return fmt.Errorf("%s: keys %q..%q lie outside the backup's span", field, f.FirstKey, f.LastKey)
		}
		seen[f.Name] = true
		lastKey = f.LastKey
	}
	return nil
}

// CheckIncrementalBase checks that base can be the previous backup of an
// incremental backup at ts of the span [start, end).
func CheckIncrementalBase(base *Manifest, ts Timestamp, start, end []byte) error {
	if !base.Timestamp.Less(ts) {
		return fmt.Errorf("the previous backup's timestamp %s is not below the new backup's %s", base.Timestamp, ts)
	}
	if !bytes.Equal(base.StartKey, start) || !bytes.Equal(base.EndKey, end) {
		return fmt.Errorf("the previous backup holds span %q..%q, not %q..%q", base.StartKey, base.EndKey, start, end)
	}
	return nil
}

func isSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

// ReadManifest reads and validates dir's manifest and returns it with the
// SHA-256 of its bytes. A directory without one is not a backup.
func ReadManifest(dir string) (*Manifest, string, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("%s is not a backup: it has no %s", dir, ManifestName)
	}
	if err != nil {
		return nil, "", err
	}
	m := &Manifest{}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return nil, "", fmt.Errorf("%s: %s is not a valid manifest: %w", dir, ManifestName, err)
	}
	if err := m.Validate(); err != nil {
		return nil, "", fmt.Errorf("%s: %s: %w", dir, ManifestName, err)
	}
	sum := sha256.Sum256(data)
	return m, hex.EncodeToString(sum[:]), nil
}

// writeManifest writes m into dir (through a temporary file and a rename,
// synced, so a crash leaves either no manifest or the whole one).
func writeManifest(dir string, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ManifestName+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestName)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}

// nowString is CreatedAt's value.
func nowString() string { return time.Now().UTC().Format(time.RFC3339) }
