package fault

import (
	"strings"
	"testing"
	"time"
)

func TestParseLatencyTable(t *testing.T) {
	tab, err := ParseLatencyTable(GlobalLatencies)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		a, b string
		rtt  time.Duration
	}{
		{"us-east", "eu-west", 70 * time.Millisecond},
		{"eu-west", "us-east", 70 * time.Millisecond},
		{"ap-south", "us-east", 180 * time.Millisecond},
		{"eu-west", "ap-south", 120 * time.Millisecond},
		{"eu-west", "eu-west", 0},
	} {
		got, ok := tab.RTT(c.a, c.b)
		if !ok || got != c.rtt {
			t.Errorf("RTT(%s, %s) = %s, %v; want %s", c.a, c.b, got, ok, c.rtt)
		}
		if ow := tab.OneWay(c.a, c.b); ow != c.rtt/2 {
			t.Errorf("OneWay(%s, %s) = %s; want %s", c.a, c.b, ow, c.rtt/2)
		}
	}
	if _, ok := tab.RTT("us-east", "mars"); ok {
		t.Error("RTT to a region the table does not list is ok")
	}
	if ow := tab.OneWay("us-east", "mars"); ow != 0 {
		t.Errorf("OneWay to an unlisted region = %s", ow)
	}
	if err := tab.Check([]string{"us-east", "eu-west", "ap-south", "us-east"}); err != nil {
		t.Errorf("Check of its own regions: %v", err)
	}
	if err := tab.Check([]string{"us-east", "mars"}); err == nil || !strings.Contains(err.Error(), "region mars") {
		t.Errorf("Check with an uncovered region: %v", err)
	}
	// String round-trips, pairs sorted.
	want := "ap-south/eu-west=120ms,ap-south/us-east=180ms,eu-west/us-east=70ms"
	if s := tab.String(); s != want {
		t.Errorf("String = %q, want %q", s, want)
	}
	local, err := ParseLatencyTable(" a/b = 10ms , local=500us ")
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := local.RTT("a", "a"); d != 500*time.Microsecond {
		t.Errorf("local RTT = %s", d)
	}
	again, err := ParseLatencyTable(local.String())
	if err != nil || again.String() != local.String() {
		t.Errorf("round trip of %q: %q, %v", local, again, err)
	}
}

// TestParseLatencyTableRefuses: each bad table is refused with an error
// naming the entry and what is wrong with it.
func TestParseLatencyTableRefuses(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "empty"},
		{"us-east/eu-west", `"us-east/eu-west" is not REGION/REGION=DURATION`},
		{"us-east=70ms", `"us-east=70ms" is not REGION/REGION=DURATION`},
		{"a/b=70", `"a/b=70"`},
		{"a/b=-1ms", "outside [0, 10s]"},
		{"a/b=70s", "outside [0, 10s]"},
		{"a/a=1ms", "pairs region a with itself"},
		{"a/b=1ms,b/a=2ms", "pair a/b given twice"},
		{"a/=1ms", "empty region name"},
		{"a b/c=1ms", `region "a b"`},
		{"local=1ms,local=2ms", "local given twice"},
	} {
		tab, err := ParseLatencyTable(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseLatencyTable(%q) = %v, %v; want an error containing %q", c.in, tab, err, c.want)
		}
	}
}

// TestNetworkPlaceAndDelay: delays follow the members' regions; a region
// the table does not cover is refused whichever comes first.
func TestNetworkPlaceAndDelay(t *testing.T) {
	n := NewNetwork()
	n.Register(0, "g0", "r0")
	n.Register(1, "g1", "r1")
	n.Register(2, "g2", "r2")
	if d := n.Delay("r0", "r1"); d != 0 {
		t.Fatalf("delay without a table: %s", d)
	}
	tab := placeGlobal(t, n, "us-east", "eu-west", "us-east")
	if d := n.Delay("r0", "r1"); d != 35*time.Millisecond {
		t.Errorf("us-east -> eu-west: %s", d)
	}
	if d := n.Delay("g1", "g0"); d != 35*time.Millisecond {
		t.Errorf("eu-west -> us-east: %s", d)
	}
	if d := n.Delay("r0", "r2"); d != 0 {
		t.Errorf("inside us-east: %s", d)
	}
	if d := n.Delay("r0", "unregistered"); d != 0 {
		t.Errorf("to an unregistered address: %s", d)
	}
	if d := n.DelayFrom("ap-south", "g1"); d != 60*time.Millisecond {
		t.Errorf("ap-south -> eu-west: %s", d)
	}
	if err := n.Place(3, "mars"); err == nil || !strings.Contains(err.Error(), "region mars") {
		t.Errorf("Place in an uncovered region: %v", err)
	}
	if _, err := n.ClientDialOptions("mars"); err == nil {
		t.Error("a client in an uncovered region was accepted")
	}
	if err := n.Place(3, "bad region"); err == nil {
		t.Error("a malformed region was accepted")
	}
	n2 := NewNetwork()
	if err := n2.Place(0, "mars"); err != nil {
		t.Fatal(err)
	}
	if err := n2.SetLatency(tab); err == nil || !strings.Contains(err.Error(), "mars") {
		t.Errorf("SetLatency not covering a placed region: %v", err)
	}
	if n2.Latency() != nil {
		t.Error("a refused table was set")
	}
	opts, err := n2.ClientDialOptions("mars")
	if err != nil || opts != nil {
		t.Errorf("client options without a table: %v, %v", opts, err)
	}
}

func TestLatencyTableCheckPairs(t *testing.T) {
	tab, err := ParseLatencyTable("a/b=10ms,b/c=20ms")
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Check([]string{"a", "b"}); err != nil {
		t.Error(err)
	}
	if err := tab.Check([]string{"c", "a", "b"}); err == nil || !strings.Contains(err.Error(), "no round trip for a/c") {
		t.Errorf("Check of a table missing a/c: %v", err)
	}
}
