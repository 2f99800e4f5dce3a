package chaos

import (
	"strings"
	"testing"
)

// TestFreeLoopbackHTTP: the last --http-addr of a process's flags decides;
// FreeLoopback there becomes a loopback address of its own, recorded as
// its HTTP address; any other value is left alone.
func TestFreeLoopbackHTTP(t *testing.T) {
	p := &proc{args: []string{"start", "--http-addr", "", "--log-level", "warn", "--http-addr", FreeLoopback}}
	if err := p.freeHTTP(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.http, "127.0.0.1:") || p.args[6] != p.http || p.args[2] != "" {
		t.Fatalf("args %q, http %q: want the last --http-addr to be a loopback address, recorded", p.args, p.http)
	}
	q := &proc{args: []string{"start", "--http-addr", FreeLoopback, "--http-addr", ""}}
	if err := q.freeHTTP(); err != nil {
		t.Fatal(err)
	}
	if q.http != "" || q.args[2] != FreeLoopback || q.args[4] != "" {
		t.Fatalf("args %q, http %q: want them unchanged (the last --http-addr is empty)", q.args, q.http)
	}
}
