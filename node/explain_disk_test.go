package node

import (
	"testing"

	"github.com/rangestore/rangestore/allocator"
	"github.com/rangestore/rangestore/proto/rspb"
)

// TestDiskUse: a store's fullness counts its own data against its data
// plus what is available, not the rest of a shared disk (a disk 89 % used
// by others, with 10 GiB available, leaves a 100 MiB store far from full);
// it is full once its own data is more than 95 % of that; with its use
// unknown, capacity minus available counts as used.
func TestDiskUse(t *testing.T) {
	const gib = int64(1) << 30
	for _, c := range []struct {
		name       string
		d          *rspb.StoreDescriptor
		cap, used  int64
		wantFullAt bool
	}{
		{"shared disk, small store", &rspb.StoreDescriptor{CapacityBytes: 252 * gib, AvailableBytes: 10 * gib, UsedBytes: 100 << 20}, 10*gib + 100<<20, 100 << 20, false},
		{"store filled its disk", &rspb.StoreDescriptor{CapacityBytes: 100 * gib, AvailableBytes: 4 * gib, UsedBytes: 90 * gib}, 94 * gib, 90 * gib, true},
		{"store use unknown", &rspb.StoreDescriptor{CapacityBytes: 100 * gib, AvailableBytes: 3 * gib}, 100 * gib, 97 * gib, true},
	} {
		capacity, used := diskUse(c.d)
		if capacity != c.cap || used != c.used {
			t.Errorf("%s: capacity %d used %d, want %d and %d", c.name, capacity, used, c.cap, c.used)
		}
		if full := float64(used) > allocator.DiskFullFraction*float64(capacity); full != c.wantFullAt {
			t.Errorf("%s: full=%t, want %t", c.name, full, c.wantFullAt)
		}
	}
}
