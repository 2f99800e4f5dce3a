package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	"github.com/rangestore/rangestore/backup"
	"github.com/rangestore/rangestore/proto/rspb"
)

// runBackup runs backup --to DIR [--as-of TS] [--incremental-from DIR] |
// backup verify DIR | backup release DIR.
func runBackup(args []string) error {
	fs := newFlagSet("backup")
	tgt := addTargetFlags(fs, "gRPC address of any node")
	to := fs.String("to", "", "directory of the new backup (must not exist or be empty)")
	asOf := fs.String("as-of", "", "backup timestamp: @SECONDS.NANOS[,LOGICAL] as `kv put` prints it, or wall nanoseconds (default: now - 5s)")
	from := fs.String("incremental-from", "", "directory of the previous backup of the chain: back up only the changes since it")
	id := fs.String("id", "", "release: the protection record's ID (for a backup that never wrote its manifest)")
	timeout := fs.Duration("timeout", time.Hour, "how long the backup may take")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a := fs.Args()
	switch {
	case len(a) == 2 && a[0] == "verify":
		dirs, ms, err := backup.VerifyChain(a[1])
		if err != nil {
			return err
		}
		for i, m := range ms {
			keys, deleted := counts(m)
			fmt.Fprintf(stdout, "OK %s: backup at %s, %s, %d versions (%d deletions)%s\n", dirs[i], m.Timestamp, plural(len(m.Files), "file", "files"), keys, deleted, previousNote(m))
		}
		return nil
	case len(a) == 1 && a[0] == "protections":
		return withConn(tgt, 30*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, err := rspb.NewBackupClient(conn).ListProtections(ctx, &rspb.ListProtectionsRequest{})
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tTIMESTAMP\tCREATED\tHOLDER")
			for _, r := range resp.Records {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Id, tsString(r.Timestamp), tsString(r.CreatedAt), r.Description)
			}
			return w.Flush()
		})
	case len(a) == 1 && a[0] == "release" && *id != "":
		return withConn(tgt, 30*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, err := rspb.NewBackupClient(conn).Release(ctx, &rspb.ReleaseRequest{Id: *id})
			if err != nil {
				return err
			}
			if !resp.Existed {
				return fmt.Errorf("no protection record %s", *id)
			}
			fmt.Fprintf(stdout, "released protection %s\n", *id)
			return nil
		})
	case len(a) == 2 && a[0] == "release":
		return withConn(tgt, 30*time.Second, func(ctx context.Context, conn *grpc.ClientConn) error {
			existed, m, err := backup.Release(ctx, conn, a[1])
			if err != nil {
				return err
			}
			if !existed {
				fmt.Fprintf(stdout, "no protection record %s (already released)\n", m.ProtectionID)
				return nil
			}
			fmt.Fprintf(stdout, "released protection %s of the backup at %s\n", m.ProtectionID, m.Timestamp)
			return nil
		})
	case len(a) > 0:
		return usagef("backup", "unknown arguments %q (want --to DIR, verify DIR, release DIR, release --id ID or protections)", a)
	case *to == "":
		return usagef("backup", "--to DIR is required")
	}
	opts := backup.Options{Dir: *to, IncrementalFrom: *from}
	if *asOf != "" {
		ts, err := backup.ParseTimestamp(*asOf)
		if err != nil {
			return usagef("backup", "--as-of: %v", err)
		}
		opts.AsOf = ts
	}
	return withConn(tgt, *timeout, func(ctx context.Context, conn *grpc.ClientConn) error {
		m, err := backup.Backup(ctx, conn, opts)
		if err != nil {
			return err
		}
		keys, deleted := counts(m)
		fmt.Fprintf(stdout, "backup at %s written to %s: %s, %d versions (%d deletions)%s; protection %s\n",
			m.Timestamp, *to, plural(len(m.Files), "file", "files"), keys, deleted, previousNote(m), m.ProtectionID)
		return nil
	})
}

// runRestore runs restore --from DIR.
func runRestore(args []string) error {
	fs := newFlagSet("restore")
	tgt := addTargetFlags(fs, "gRPC address of any node of the (empty) cluster")
	from := fs.String("from", "", "backup directory (the last of a chain: its previous backups are applied first)")
	timeout := fs.Duration("timeout", time.Hour, "how long the restore may take")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("restore", "unexpected arguments %q", fs.Args())
	}
	if *from == "" {
		return usagef("restore", "--from DIR is required")
	}
	return withConn(tgt, *timeout, func(ctx context.Context, conn *grpc.ClientConn) error {
		res, err := backup.Restore(ctx, conn, *from)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "restored the state at %s from %s: %d puts, %d deletes\n", res.Timestamp, plural(len(res.Chain), "backup", "backups"), res.Puts, res.Deletes)
		return nil
	})
}

func counts(m *backup.Manifest) (keys, deleted int64) {
	for _, f := range m.Files {
		keys += f.Keys
		deleted += f.Deleted
	}
	return keys, deleted
}

func previousNote(m *backup.Manifest) string {
	if m.Previous == nil {
		return ", full"
	}
	return fmt.Sprintf(", incremental from %s (%s)", m.Previous.Dir, m.Previous.Timestamp)
}
