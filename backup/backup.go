package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/proto/rspb"
)

// DefaultFileBytes is the size at which a data file is closed and the next
// one begun.
const DefaultFileBytes = 64 << 20

// Options configure Backup.
type Options struct {
	// Dir is the new backup's directory: it must not exist or be empty.
	Dir string
	// AsOf is the backup timestamp (empty: the node's clock minus Lag).
	AsOf Timestamp
	Lag  int64 // nanoseconds; 0 = the node's default (5 s)
	// IncrementalFrom is the directory of the previous backup of the chain
	// ("" = a full backup).
	IncrementalFrom string
	// FileBytes: data files are cut at about this size (0 = DefaultFileBytes).
	FileBytes int64
}

// Backup writes the user keyspace at one timestamp into opts.Dir through
// the node conn is connected to. The steps:
//
//  1. The directory must be new or empty; an incremental's base must be a
//     valid backup (its manifest is read, not its files: `backup verify`).
//  2. A protection record for the backup timestamp is written first (the
//     node picks the timestamp when AsOf is empty), so that from then on
//     no GC removes what the backup or the next incremental reads; for an
//     incremental the timestamp must be above the base's.
//  3. The span is exported (Backup.Export: range by range, each a plain
//     read at the timestamp, so writes are not blocked) into data files.
//  4. The manifest is written last: a directory without one is no backup.
//  5. An incremental then releases its base's protection record: the
//     newest backup of a chain keeps its timestamp protected until the
//     next incremental replaces it or `backup release` drops it.
//
// On failure the new protection record is released and the files written
// are removed (the directory is left empty, or removed if Backup made it).
func Backup(ctx context.Context, conn *grpc.ClientConn, opts Options) (*Manifest, error) {
	if opts.Dir == "" {
		return nil, status.Error(codes.InvalidArgument, "backup: --to DIR is required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := checkEmptyDir(dir); err != nil {
		return nil, err
	}
	var base *Manifest
	var baseSum, baseDir string
	if opts.IncrementalFrom != "" {
		if baseDir, err = filepath.Abs(opts.IncrementalFrom); err != nil {
			return nil, err
		}
		if baseDir == dir {
			return nil, status.Error(codes.InvalidArgument, "backup: --incremental-from names the new backup's own directory")
		}
		if base, baseSum, err = ReadManifest(baseDir); err != nil {
			return nil, status.Error(codes.InvalidArgument, "backup: --incremental-from: "+err.Error())
		}
	}
	if !opts.AsOf.IsEmpty() && base != nil {
		if err := CheckIncrementalBase(base, opts.AsOf, nil, nil); err != nil {
			return nil, status.Error(codes.InvalidArgument, "backup: --incremental-from: "+err.Error())
		}
	}
	_, statErr := os.Stat(dir)
	createdDir := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	m := &Manifest{Version: FormatVersion, Files: []File{}}
	done := false
	defer func() {
		if !done {
			// The directory was empty: leave it so (or gone, if it was).
			for _, f := range m.Files {
				_ = os.Remove(filepath.Join(dir, f.Name))
			}
			_ = os.Remove(filepath.Join(dir, dataFileName(len(m.Files)+1)))
			_ = os.Remove(filepath.Join(dir, ManifestName+".tmp"))
			if createdDir {
				_ = os.Remove(dir)
			}
		}
	}()
	bc := rspb.NewBackupClient(conn)
	prot, err := bc.Protect(ctx, &rspb.ProtectRequest{Timestamp: opts.AsOf.Proto(), Description: "backup " + dir, LagNanos: opts.Lag})
	if err != nil {
		return nil, fmt.Errorf("backup: protecting the backup timestamp: %w", err)
	}
	rec := prot.Record
	ok := false
	defer func() {
		if !ok {
			// Best effort: a record left behind only holds GC back (list
			// and release it with the Backup service).
			_, _ = bc.Release(context.WithoutCancel(ctx), &rspb.ReleaseRequest{Id: rec.Id})
		}
	}()
	m.Timestamp, m.ProtectionID, m.CreatedAt = FromProto(rec.Timestamp), rec.Id, nowString()
	req := &rspb.ExportRequest{EndTs: rec.Timestamp}
	if base != nil {
		if err := CheckIncrementalBase(base, m.Timestamp, nil, nil); err != nil {
			return nil, status.Error(codes.InvalidArgument, "backup: --incremental-from: "+err.Error())
		}
		m.Previous = &Previous{Dir: baseDir, Timestamp: base.Timestamp, ManifestSHA256: baseSum}
		req.StartTs = base.Timestamp.Proto()
	}
	if err := exportInto(ctx, bc, req, dir, opts.FileBytes, m); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("backup: the manifest written would be invalid: %w", err)
	}
	if err := writeManifest(dir, m); err != nil {
		return nil, err
	}
	ok, done = true, true
	if base != nil && base.ProtectionID != "" {
		if _, err := bc.Release(ctx, &rspb.ReleaseRequest{Id: base.ProtectionID}); err != nil {
			return m, fmt.Errorf("backup written, but releasing the previous backup's protection %s failed (run `rangestore backup release %s`): %w", base.ProtectionID, baseDir, err)
		}
	}
	return m, nil
}

// exportInto streams the export into data files of about fileBytes each.
func exportInto(ctx context.Context, bc rspb.BackupClient, req *rspb.ExportRequest, dir string, fileBytes int64, m *Manifest) error {
	if fileBytes <= 0 {
		fileBytes = DefaultFileBytes
	}
	st, err := bc.Export(ctx, req)
	if err != nil {
		return fmt.Errorf("backup: export: %w", err)
	}
	var w *fileWriter
	defer func() {
		if w != nil {
			w.abort()
		}
	}()
	for {
		chunk, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("backup: export: %w", err)
		}
		for _, v := range chunk.Versions {
			if w == nil {
				if w, err = createDataFile(dir, dataFileName(len(m.Files)+1)); err != nil {
					return err
				}
			}
			if err := w.add(v); err != nil {
				return err
			}
			if w.entry.Size >= fileBytes {
				f, err := w.finish()
				w = nil
				if err != nil {
					return err
				}
				m.Files = append(m.Files, f)
			}
		}
	}
	if w != nil {
		f, err := w.finish()
		w = nil
		if err != nil {
			return err
		}
		m.Files = append(m.Files, f)
	}
	return syncDir(dir)
}

// checkEmptyDir: dir does not exist, or is an empty directory.
func checkEmptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return status.Error(codes.InvalidArgument, fmt.Sprintf("backup: --to %s: %v", dir, err))
	}
	if len(ents) > 0 {
		return status.Error(codes.InvalidArgument, fmt.Sprintf("backup: --to %s is not empty (%d entries, e.g. %s): back up into a new or empty directory", dir, len(ents), ents[0].Name()))
	}
	return nil
}

// Verify checks a backup directory: its manifest, and every data file's
// size, SHA-256 and records. It reads nothing of the chain before it.
func Verify(dir string) (*Manifest, error) {
	m, _, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	for _, f := range m.Files {
		if err := checkFile(dir, f); err != nil {
			return m, err
		}
	}
	return m, nil
}

// VerifyChain checks the backup in dir and every backup of the chain
// before it (what a restore of dir reads): the links between their
// manifests and all their files. It returns the chain, full backup first.
func VerifyChain(dir string) ([]string, []*Manifest, error) {
	dirs, ms, err := Chain(dir)
	if err != nil {
		return nil, nil, err
	}
	for i, m := range ms {
		for _, f := range m.Files {
			if err := checkFile(dirs[i], f); err != nil {
				return dirs, ms, err
			}
		}
	}
	return dirs, ms, nil
}

// Release drops the protection record of the backup in dir.
func Release(ctx context.Context, conn *grpc.ClientConn, dir string) (existed bool, m *Manifest, err error) {
	m, _, err = ReadManifest(dir)
	if err != nil {
		return false, nil, err
	}
	if m.ProtectionID == "" {
		return false, m, nil
	}
	resp, err := rspb.NewBackupClient(conn).Release(ctx, &rspb.ReleaseRequest{Id: m.ProtectionID})
	if err != nil {
		return false, m, err
	}
	return resp.Existed, m, nil
}
