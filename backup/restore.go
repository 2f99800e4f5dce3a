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

// Restore batches stay well inside a node's default limits
// (max_batch_requests 1000, max_batch_bytes 4 MiB).
const (
	restoreBatchRequests = 500
	restoreBatchBytes    = 1 << 20
)

// maxChain bounds the backups of one chain (a cycle of manifests naming
// each other would otherwise never end).
const maxChain = 10000

// RestoreResult says what Restore applied.
type RestoreResult struct {
	Chain     []string  // the backup directories applied, full backup first
	Timestamp Timestamp // the state restored is the source's at this timestamp
	Puts      int64
	Deletes   int64
}

// Chain returns the manifests of the chain ending at dir, full backup
// first, checking each link (the previous manifest's checksum and
// timestamp as the next one recorded them).
func Chain(dir string) ([]string, []*Manifest, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, nil, err
	}
	m, _, err := ReadManifest(abs)
	if err != nil {
		return nil, nil, err
	}
	dirs, ms := []string{abs}, []*Manifest{m}
	for m.Previous != nil {
		if len(ms) > maxChain {
			return nil, nil, fmt.Errorf("%s: the chain of previous backups is longer than %d (a cycle?)", abs, maxChain)
		}
		p := m.Previous
		pdir := p.Dir
		if _, err := os.Stat(pdir); errors.Is(err, os.ErrNotExist) {
			// A chain moved as a whole: the previous backup beside this one
			// (its manifest checksum still has to match).
			if moved := filepath.Join(filepath.Dir(dirs[0]), filepath.Base(pdir)); moved != dirs[0] {
				pdir = moved
			}
		}
		pm, sum, err := ReadManifest(pdir)
		if err != nil {
			return nil, nil, fmt.Errorf("the previous backup of %s (recorded at %s): %w", dirs[0], p.Dir, err)
		}
		if sum != p.ManifestSHA256 {
			return nil, nil, fmt.Errorf("the previous backup of %s: %s's manifest has SHA-256 %s, not the %s recorded (it was replaced or altered)", dirs[0], pdir, sum, p.ManifestSHA256)
		}
		if pm.Timestamp != p.Timestamp {
			return nil, nil, fmt.Errorf("the previous backup of %s: %s is at %s, not the %s recorded", dirs[0], pdir, pm.Timestamp, p.Timestamp)
		}
		dirs, ms = append([]string{pdir}, dirs...), append([]*Manifest{pm}, ms...)
		m = pm
	}
	return dirs, ms, nil
}

// Restore loads the backup in dir (with the chain of backups it is an
// incremental of) into the cluster conn is connected to, which must hold
// no user key. It first checks every file of the chain and the cluster,
// so that bad input changes nothing; then it writes the full backup's
// keys and each incremental's keys and deletions in order, through the
// normal KV write path (Batch of Put and Delete; the restored versions get
// new commit timestamps). A failure while writing leaves what was written.
func Restore(ctx context.Context, conn *grpc.ClientConn, dir string) (*RestoreResult, error) {
	dirs, ms, err := VerifyChain(dir)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "restore: "+err.Error())
	}
	kvc := rspb.NewKVClient(conn)
	if err := checkNoUserData(ctx, kvc); err != nil {
		return nil, err
	}
	res := &RestoreResult{Chain: dirs, Timestamp: ms[len(ms)-1].Timestamp}
	for i, m := range ms {
		for _, f := range m.Files {
			if err := applyFile(ctx, kvc, filepath.Join(dirs[i], f.Name), res); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// checkNoUserData refuses a cluster holding any live user key.
func checkNoUserData(ctx context.Context, kvc rspb.KVClient) error {
	st, err := kvc.Scan(ctx, &rspb.ScanRequest{Limit: 1, KeysOnly: true})
	if err != nil {
		return fmt.Errorf("restore: checking that the cluster is empty: %w", err)
	}
	for {
		chunk, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("restore: checking that the cluster is empty: %w", err)
		}
		if len(chunk.Kvs) > 0 {
			return status.Error(codes.FailedPrecondition, fmt.Sprintf("restore refused: the cluster has user data (key %q): restore into a fresh cluster", chunk.Kvs[0].Key))
		}
	}
}

// applyFile writes one data file's versions in batches.
func applyFile(ctx context.Context, kvc rspb.KVClient, path string, res *RestoreResult) error {
	var batch []*rspb.RequestUnion
	var bytes int
	var puts, dels int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if _, err := kvc.Batch(ctx, &rspb.BatchRequest{Requests: batch}); err != nil {
			return fmt.Errorf("restore: writing %s: %w", path, err)
		}
		res.Puts += puts
		res.Deletes += dels
		batch, bytes, puts, dels = nil, 0, 0, 0
		return nil
	}
	err := readRecords(path, func(v *rspb.ExportedVersion) error {
		size := len(v.Key) + len(v.Value)
		if len(batch) > 0 && (len(batch) >= restoreBatchRequests || bytes+size > restoreBatchBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		if v.Deleted {
			batch = append(batch, &rspb.RequestUnion{Value: &rspb.RequestUnion_Delete{Delete: &rspb.DeleteRequest{Key: v.Key}}})
			dels++
		} else {
			batch = append(batch, &rspb.RequestUnion{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: v.Key, Value: v.Value}}})
			puts++
		}
		bytes += size
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}
