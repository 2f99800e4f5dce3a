package node

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/rangestore/rangestore/kv/keys"
	"github.com/rangestore/rangestore/proto/rspb"
	"github.com/rangestore/rangestore/ranges"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Cluster settings (SetClusterSetting): values in the system range that
// every node reads. closed_timestamp_target (keys.ClosedTimestampTargetKey)
// is read by the loop every nodeRefreshInterval and applied to the store
// (ranges.Store.SetClosedTimestampTarget); until one is written, each node
// uses its Config.ClosedTimestampTarget (--closed-timestamp-target). The
// node that writes it applies it at once. replication_factor is
// SetReplicationFactor's setting, read by the replicate queue.

// Cluster setting names.
const (
	SettingClosedTimestampTarget = "closed_timestamp_target"
	SettingReplicationFactor     = "replication_factor"
)

// parseClosedTarget parses and validates a closed_timestamp_target value.
func parseClosedTarget(value string) (time.Duration, error) {
	d, err := time.ParseDuration(value)
	if err != nil {
		return 0, fmt.Errorf("%q: not a duration (e.g. 3s, 500ms)", value)
	}
	if err := ranges.ValidateClosedTimestampTarget(d); err != nil {
		return 0, err
	}
	return d, nil
}

// defaultClosedTarget is the target before any setting is written.
func (n *Node) defaultClosedTarget() time.Duration {
	if n.cfg.ClosedTimestampTarget > 0 {
		return n.cfg.ClosedTimestampTarget
	}
	return ranges.DefaultClosedTimestampTarget
}

// closedTargetSetting reads the closed_timestamp_target setting: its
// stored text, and whether one is stored.
func (n *Node) closedTargetSetting(ctx context.Context) (string, bool, error) {
	resps, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Get{Get: &rspb.GetRequest{Key: keys.ClosedTimestampTargetKey}}}})
	if err != nil {
		return "", false, fmt.Errorf("reading the %s setting: %w", SettingClosedTimestampTarget, err)
	}
	g := resps[0].GetGet()
	return string(g.GetKv().GetValue()), g.GetFound(), nil
}

// refreshSettings is the loop's step: read the cluster settings and apply
// them here. A stored value that is not valid (written by hand) is logged
// and ignored.
func (n *Node) refreshSettings(ctx context.Context) error {
	v, found, err := n.closedTargetSetting(ctx)
	if err != nil {
		return err
	}
	d := n.defaultClosedTarget()
	if found {
		if d, err = parseClosedTarget(v); err != nil {
			n.log.Warn("ignoring an invalid cluster setting", "setting", SettingClosedTimestampTarget, "err", err)
			return nil
		}
	}
	n.applyClosedTarget(d, found)
	return nil
}

// applyClosedTarget sets the store's closed timestamp target (d is valid).
func (n *Node) applyClosedTarget(d time.Duration, fromSetting bool) {
	prev := n.store.ClosedTimestampTarget()
	if changed, err := n.store.SetClosedTimestampTarget(d); err != nil {
		n.log.Warn("closed timestamp target not applied", "target", d, "err", err)
	} else if changed {
		n.log.Info("closed timestamp target changed", "target", d, "previous", prev, "cluster_setting", fromSetting)
	}
}

// SetClusterSetting validates and writes a cluster setting, applies it on
// this node at once (the others read it within nodeRefreshInterval) and
// reports the previous value. An unknown name or a bad value is
// InvalidArgument naming it, and nothing is written.
func (n *Node) SetClusterSetting(ctx context.Context, name, value string) (*rspb.SetClusterSettingResponse, error) {
	switch name {
	case SettingReplicationFactor:
		f, err := strconv.Atoi(value)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%s %q: not a number (1, 3, 5, 7 or 9)", name, value)
		}
		r, err := n.SetReplicationFactor(ctx, f)
		if err != nil {
			return nil, err
		}
		return &rspb.SetClusterSettingResponse{Name: name, Value: strconv.Itoa(int(r.ReplicationFactor)), Previous: strconv.Itoa(int(r.Previous))}, nil
	case SettingClosedTimestampTarget:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "name %q: unknown cluster setting (%s, %s)", name, SettingClosedTimestampTarget, SettingReplicationFactor)
	}
	d, err := parseClosedTarget(value)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s %v", name, err)
	}
	ctx, cancel, err := n.operatorCtx(ctx, 10*time.Second)
	defer cancel()
	if err != nil {
		return nil, err
	}
	prev, found, err := n.closedTargetSetting(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if !found {
		prev = ""
	}
	norm := d.String()
	if _, err := n.router.Send(ctx, []*rspb.RequestUnion{{Value: &rspb.RequestUnion_Put{Put: &rspb.PutRequest{
		Key: keys.ClosedTimestampTargetKey, Value: []byte(norm)}}}}); err != nil {
		return nil, status.Errorf(codes.Unavailable, "writing the %s setting: %v", name, err)
	}
	n.applyClosedTarget(d, true)
	n.log.Info("cluster setting written", "setting", name, "value", norm, "previous", prev)
	return &rspb.SetClusterSettingResponse{Name: name, Value: norm, Previous: prev}, nil
}
