package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The failover benchmark's per-trial timeline (FAILOVER_TIMELINE=1): what
// the benchmark's writes saw, and what the survivors logged at debug level
// between the kill and the first successful write.

// failoverAttempt is one write the benchmark sent after the kill.
type failoverAttempt struct {
	start, end time.Time
	err        error
}

// failoverEvent is one line of the timeline.
type failoverEvent struct {
	at   time.Time
	proc int    // process index (-1: the benchmark)
	what string // short description
}

var (
	logTimeRE = regexp.MustCompile(`^time=(\S+) level=\S+ msg=("(?:[^"\\]|\\.)*"|\S+)(.*)$`)
	logAttrRE = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S+)`)
)

// parseLogLine splits a slog text line into its time, message and
// attributes (ok=false for other lines).
func parseLogLine(line string) (at time.Time, msg string, attrs map[string]string, ok bool) {
	m := logTimeRE.FindStringSubmatch(line)
	if m == nil {
		return time.Time{}, "", nil, false
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		return time.Time{}, "", nil, false
	}
	attrs = map[string]string{}
	for _, a := range logAttrRE.FindAllStringSubmatch(m[3], -1) {
		attrs[a[1]] = unquote(a[2])
	}
	return at, unquote(m[2]), attrs, true
}

func unquote(s string) string {
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
}

// failoverSteps are the first times of the steps of a failover (zero: not
// seen).
type failoverSteps struct {
	livenessExpired, userLeader, systemLeader, metaLeader time.Time
	epochIncremented, leaseProposed, leaseAcquired        time.Time
	firstWrite                                            time.Time
	heartbeatFailures                                     int
}

// failoverTimeline renders the timeline of one trial: the survivors' logs
// (procs[i] is the process index of logs[i]) between kill and the first
// successful attempt, restricted to the meta (r1), system (r2) and user
// (rangeID) ranges and to liveness; then a summary of the steps.
func failoverTimeline(kill time.Time, attempts []failoverAttempt, rangeID uint64, procs []int, logs []string) string {
	var evs []failoverEvent
	var st failoverSteps
	end := kill.Add(time.Minute)
	for _, a := range attempts {
		// A failed write at its start, the successful one at its end.
		at, what := a.start, "write failed after "+a.end.Sub(a.start).Round(time.Millisecond).String()
		if a.err != nil {
			what += ": " + shorten(a.err.Error(), 160)
		} else {
			at, what = a.end, fmt.Sprintf("write ok (sent at %+d)", a.start.Sub(kill).Milliseconds())
			st.firstWrite, end = a.end, a.end
		}
		evs = append(evs, failoverEvent{at: at, proc: -1, what: what})
	}
	first := func(t *time.Time, at time.Time) {
		if t.IsZero() {
			*t = at
		}
	}
	user := strconv.FormatUint(rangeID, 10)
	for i, log := range logs {
		for _, line := range strings.Split(log, "\n") {
			at, msg, attrs, ok := parseLogLine(line)
			if !ok || at.Before(kill.Add(-10*time.Millisecond)) || at.After(end) {
				continue
			}
			rng := attrs["range"]
			relevant := rng == "" || rng == "1" || rng == "2" || rng == user
			var what string
			switch msg {
			case "raft leader changed":
				if !relevant {
					continue
				}
				what = fmt.Sprintf("r%s raft leader=%s term=%s", rng, attrs["leader"], attrs["term"])
				if attrs["leader"] != "0" {
					switch rng {
					case user:
						first(&st.userLeader, at)
					case "2":
						first(&st.systemLeader, at)
					case "1":
						first(&st.metaLeader, at)
					}
				}
			case "liveness heartbeat failed":
				st.heartbeatFailures++
				what = "heartbeat failed: " + shorten(attrs["err"], 120)
			case "liveness heartbeat recovered":
				what = fmt.Sprintf("heartbeat recovered after %s (own record lapsed: %s)", attrs["failing_for"], attrs["self_lapsed"])
			case "incremented liveness epoch":
				what = fmt.Sprintf("incremented n%s's epoch to %s", attrs["node"], attrs["epoch"])
				first(&st.epochIncremented, at)
				if w, err := strconv.ParseInt(attrs["expired_wall"], 10, 64); err == nil {
					first(&st.livenessExpired, time.Unix(0, w))
				}
			case "lease takeover: incrementing the holder's epoch", "lease proposed", "lease acquired", "lease proposal failed",
				"background lease operation failed":
				if !relevant {
					continue
				}
				what = fmt.Sprintf("r%s %s", rng, msg)
				for _, k := range []string{"sequence", "code", "op", "reason"} {
					if v := attrs[k]; v != "" {
						what += fmt.Sprintf(" %s=%s", k, shorten(v, 120))
					}
				}
				if rng == user && msg == "lease proposed" {
					first(&st.leaseProposed, at)
				}
				if rng == user && msg == "lease acquired" {
					first(&st.leaseAcquired, at)
				}
			default:
				continue
			}
			evs = append(evs, failoverEvent{at: at, proc: procs[i], what: what})
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	var sb strings.Builder
	for _, e := range evs {
		who := "bench"
		if e.proc >= 0 {
			who = fmt.Sprintf("p%d", e.proc)
		}
		fmt.Fprintf(&sb, "  %+6d %-5s %s\n", e.at.Sub(kill).Milliseconds(), who, e.what)
	}
	ms := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return strconv.FormatInt(t.Sub(kill).Milliseconds(), 10)
	}
	fmt.Fprintf(&sb, "  steps (ms): liveness-expired=%s user-leader=%s system-leader=%s meta-leader=%s epoch-incremented=%s lease-proposed=%s lease-acquired=%s first-write=%s heartbeat-failures=%d\n",
		ms(st.livenessExpired), ms(st.userLeader), ms(st.systemLeader), ms(st.metaLeader), ms(st.epochIncremented),
		ms(st.leaseProposed), ms(st.leaseAcquired), ms(st.firstWrite), st.heartbeatFailures)
	return sb.String()
}

// survivorIndexes are the process indexes other than victim, in order.
func survivorIndexes(victim int) []int {
	var out []int
	for i := 0; i < 3; i++ {
		if i != victim {
			out = append(out, i)
		}
	}
	return out
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// TestFailoverTimelineReadsProcessLogs: the timeline reads the lines the
// processes' slog text handler writes (the same handler options as
// `start`), and places the steps relative to the kill.
func TestFailoverTimelineReadsProcessLogs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	kill := time.Now()
	expired := kill.Add(1700 * time.Millisecond)
	log.Info("some other message", "range", 7)
	log.Debug("raft leader changed", "range", uint64(7), "leader", uint64(3), "term", uint64(4))
	log.Debug("raft leader changed", "range", uint64(9), "leader", uint64(1), "term", uint64(2)) // another range: left out
	log.Debug("liveness heartbeat failed", "err", "context deadline exceeded")
	log.Info("incremented liveness epoch", "node", uint64(2), "epoch", uint64(5), "expired_wall", expired.UnixNano())
	log.Debug("lease proposed", "range", uint64(7), "sequence", uint64(12), "prev_holder", uint64(2), "epoch", uint64(3))
	log.Debug("lease acquired", "range", uint64(7), "sequence", uint64(12), "prev_holder", uint64(2))
	ok := time.Now().Add(time.Second)
	attempts := []failoverAttempt{
		{start: kill, end: kill.Add(time.Second), err: errors.New("rpc error: code = Unavailable desc = range r7 unavailable")},
		{start: kill.Add(time.Second), end: ok},
	}
	out := failoverTimeline(kill, attempts, 7, []int{1}, []string{buf.String()})
	for _, want := range []string{
		"r7 raft leader=3 term=4", "heartbeat failed: context deadline exceeded", "incremented n2's epoch to 5",
		"r7 lease proposed sequence=12", "r7 lease acquired sequence=12", "bench write failed after 1s: rpc error",
		"liveness-expired=1700 ", "heartbeat-failures=1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("timeline lacks %q:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"r9", "some other message", "user-leader=-", "lease-acquired=-"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("timeline has %q:\n%s", unwanted, out)
		}
	}
}
