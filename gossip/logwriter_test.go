package gossip

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestLogWriterLevels: memberlist's lines reach slog at their level, and a
// probe that meets this node's own shut-down transport is not an error.
func TestLogWriterLevels(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"[DEBUG] memberlist: Stream connection from=1.2.3.4", "level=DEBUG"},
		{"[INFO] memberlist: Marking n2 as failed", "level=DEBUG"},
		{"[WARN] memberlist: Was able to connect to n2 over TCP but UDP probes failed", "level=WARN"},
		{"[ERR] memberlist: Failed to send indirect ping: " + errTransportShutdown.Error(), "level=DEBUG"},
		{"[ERR] memberlist: Failed to send ping: dial tcp: connection refused", "level=ERROR"},
	} {
		var buf bytes.Buffer
		w := &logWriter{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
		if _, err := w.Write([]byte(tc.line + "\n")); err != nil {
			t.Fatal(err)
		}
		if got := buf.String(); !strings.Contains(got, tc.want) || strings.Contains(got, "[ERR]") {
			t.Errorf("%q logged as %q, want %s without the prefix", tc.line, got, tc.want)
		}
	}
}
