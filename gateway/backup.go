package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/kv"
	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
)

// DefaultBackupLag is how far behind the clock a backup timestamp is
// chosen when none is given: writes in flight then are already below or
// above it, so the backup's reads wait for none of them.
const DefaultBackupLag = 5 * time.Second

// exportChunkVersions bounds the versions in one streamed Export message.
const exportChunkVersions = 1000

// BackupServer serves the Backup service: exports for backups (routed
// range by range like scans) and protection records (protected
// timestamps), which live in the system range and are written through the
// router like any other system key.
type BackupServer struct {
	rspb.UnimplementedBackupServer
	kv *KVServer
}

// NewBackupServer returns the Backup service; it shares the KV service's
// router, limits, clock and drain state.
func NewBackupServer(kvs *KVServer) *BackupServer { return &BackupServer{kv: kvs} }

// Export streams the newest versions of a span in (start_ts, end_ts].
func (s *BackupServer) Export(r *rspb.ExportRequest, stream rspb.Backup_ExportServer) error {
	ctx, cancel, err := s.kv.begin(stream.Context())
	if err != nil {
		return err
	}
	defer cancel()
	u := &rspb.RequestUnion{Value: &rspb.RequestUnion_Export{Export: r}}
	if _, err := s.kv.limits.checkRequest(u); err != nil {
		return err
	}
	if err := s.kv.checkAsOf(ctx, "export end_ts", r.EndTs); err != nil {
		return err
	}
	in := toInternal(u).GetExport()
	err = s.kv.router.ExportStream(ctx, in, func(vs []*rspb.ExportedVersion) error {
		for len(vs) > 0 {
			n := min(len(vs), exportChunkVersions)
			chunk := &rspb.ExportResponse{Versions: vs[:n]}
			toClient(&rspb.ResponseUnion{Value: &rspb.ResponseUnion_Export{Export: chunk}})
			if err := stream.Send(chunk); err != nil {
				return err
			}
			vs = vs[n:]
		}
		return nil
	})
	return ToStatus(err)
}

// Protect writes a protection record under a new random ID.
func (s *BackupServer) Protect(ctx context.Context, r *rspb.ProtectRequest) (*rspb.ProtectResponse, error) {
	ctx, cancel, err := s.kv.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if len(r.StartKey) > s.kv.limits.MaxKeySize || len(r.EndKey) > s.kv.limits.MaxKeySize {
		return nil, invalidf("protect: span keys of %d and %d bytes: max_key_size is %d bytes", len(r.StartKey), len(r.EndKey), s.kv.limits.MaxKeySize)
	}
	if len(r.EndKey) > 0 && bytes.Compare(r.StartKey, r.EndKey) >= 0 {
		return nil, invalidf("protect: start key %q is not before end key %q", r.StartKey, r.EndKey)
	}
	if r.LagNanos < 0 {
		return nil, invalidf("protect: lag_nanos must not be negative (got %d)", r.LagNanos)
	}
	ts := ranges.TSFromProto(r.Timestamp)
	if r.Timestamp == nil {
		lag := time.Duration(r.LagNanos)
		if lag == 0 {
			lag = DefaultBackupLag
		}
		ts = kv.Timestamp{WallTime: s.kv.clock.Now().WallTime - int64(lag)}
	} else if err := s.kv.checkAsOf(ctx, "protect timestamp", r.Timestamp); err != nil {
		return nil, err
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, ToStatus(err)
	}
	st, en := keys.UserSpan(r.StartKey, r.EndKey)
	rec := &rspb.ProtectionRecord{Id: hex.EncodeToString(id[:]), Timestamp: ranges.TSToProto(ts), StartKey: st, EndKey: en,
		Description: r.Description, CreatedAt: ranges.TSToProto(s.kv.clock.Now())}
	data, err := proto.Marshal(rec)
	if err != nil {
		return nil, ToStatus(err)
	}
	if _, err := s.kv.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{Key: keys.ProtectionKey(rec.Id), Value: data}}}}); err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.ProtectResponse{Record: rec}, nil
}

// Release deletes a protection record.
func (s *BackupServer) Release(ctx context.Context, r *rspb.ReleaseRequest) (*rspb.ReleaseResponse, error) {
	ctx, cancel, err := s.kv.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if r.Id == "" || len(r.Id) > 64 {
		return nil, invalidf("release: id must be 1 to 64 bytes (got %d)", len(r.Id))
	}
	resps, err := s.kv.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Delete{Delete: &rspb.DeleteRequest{Key: keys.ProtectionKey(r.Id)}}}})
	if err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.ReleaseResponse{Existed: resps[0].GetDelete().GetExisted()}, nil
}

// ListProtections lists the protection records.
func (s *BackupServer) ListProtections(ctx context.Context, _ *rspb.ListProtectionsRequest) (*rspb.ListProtectionsResponse, error) {
	ctx, cancel, err := s.kv.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	recs, err := ranges.ReadProtections(ctx, s.kv.router)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &rspb.ListProtectionsResponse{Records: recs}, nil
}
