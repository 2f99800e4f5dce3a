package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/pflag"
)

// Output of the commands (variables so that tests could redirect them).
var (
	stdout io.Writer = os.Stdout
	stderr io.Writer = os.Stderr
)

// command is one top-level command of the CLI. Its forms are its usage
// lines, without the leading "rangestore "; the top-level usage, the
// command's --help and (checked by a test) the package doc list them.
type command struct {
	name    string
	forms   []string
	summary string
	details string // printed by --help after the forms
}

// runner returns the function that runs a command (a switch rather than a
// field of commands: the run functions use the table for their help).
func runner(name string) func(args []string) error {
	switch name {
	case "start":
		return runStart
	case "init":
		return runInit
	case "cluster":
		return runCluster
	case "demo":
		return runDemo
	case "kv":
		return runKV
	case "range":
		return runRange
	case "workload":
		return runWorkload
	case "node":
		return runNode
	case "allocator":
		return runAllocator
	case "zone":
		return runZone
	case "backup":
		return runBackup
	case "restore":
		return runRestore
	case "cert":
		return runCert
	case "txn":
		return runTxn
	}
	return nil
}

// securityNote is the top-level usage's word on the connection flags.
const securityNote = `Client commands connect with user root's client certificate from --certs-dir (default
~/.rangestore-certs; --user USER: client.USER.crt), or in plaintext with --insecure to nodes started so.`

const dashNote = `Negative numbers are taken as arguments (kv incr cnt -1, kv put k -5); put -- before
any other argument that starts with "-" (kv put -- -key value).`

var commands = []command{
	{name: "start", summary: "run a node",
		forms: []string{"start --store DIR --listen-addr HOST:PORT --join ADDR[,ADDR...] (--certs-dir DIR | --insecure) [flags]",
			"start ... [--range-rebalance-threshold F] [--min-range-rebalance N] [--lease-rebalance-threshold F] [--min-lease-rebalance N] [--qps-rebalance-threshold F]",
			"start ... [--read-replica] [--read-replica-ttl D] [--routing-ttl D]"},
		details: "--certs-dir DIR (ca.crt, node.crt, node.key: rangestore cert) serves clients, peers, Raft and gossip with\n" +
			"mutual TLS; SIGHUP reloads the certificates (new connections use them). --insecure runs plaintext, with no\n" +
			"authentication: every node of a cluster runs in the same mode.\n" +
			"--join lists the initial nodes (then run init once) or, for a new node with an empty store, any nodes\n" +
			"of a running cluster: the node joins it under a new node ID. A store keeps its ID across restarts.\n" +
			"The rebalance thresholds are this node's allocator settings (its replicate queue, range explain,\n" +
			"allocator plan): a node moves replicas (leases) once it holds more than mean + max(threshold × mean, min);\n" +
			"a store is hot above max((1 + qps threshold) × mean QPS, mean + 100). Give every node the same values.\n" +
			"--read-replica starts a read replica (needs --join of a running cluster): it never votes and never\n" +
			"holds a lease; the replicate queue gives it a non-voter of every range. --read-replica-ttl (60s) is how\n" +
			"long a read replica that exited uncleanly stays, hidden, on the gossip whiteboard; --routing-ttl (300s)\n" +
			"is the TTL of the routing tables this node hands out (Discovery.GetRoutingTable)."},
	{name: "init", summary: "initialize a new cluster from its started nodes (once)",
		forms: []string{"init [--host HOST:PORT] [--initial-splits N | --split-at K1,K2,...] [--replicas N]"},
		details: "--replicas is the replication factor setting (odd, 1 to 9; default 3). The initial ranges get as many\n" +
			"replicas as there are nodes, up to it; the replicate queue adds the rest as nodes join."},
	{name: "cluster", summary: "change cluster settings (--host: any node)",
		forms: []string{"cluster set-replicas N [--host HOST:PORT]", "cluster set NAME=VALUE [--host HOST:PORT]"},
		details: "set-replicas sets the replication factor (odd, 1 to 9). Each range's leaseholder adds or removes\n" +
			"voters until the range has N; with fewer nodes able to hold replicas, ranges stay under-replicated.\n" +
			"set writes a cluster setting: closed_timestamp_target=D (50ms to 1h; how far behind its clock a\n" +
			"leaseholder closes timestamps; every node applies it within about a second; before it is set, each\n" +
			"node uses its --closed-timestamp-target) or replication_factor=N (as set-replicas)."},
	{name: "demo", summary: "run an in-process cluster with sample data",
		forms: []string{"demo [--nodes N] [--store DIR] [--duration D]",
			"demo --global [--client-region R[,R...]] [--move-every D] [--latencies L] [--concurrency N] [--read-percent P] [--summary-interval D]"},
		details: "The demo runs secure: it makes a CA, a node certificate and root's client certificate under its data\n" +
			"directory (certs/) and prints the CLI lines to connect with them (--certs-dir).\n" +
			"--global runs 9 nodes in 3 regions × 3 zones (us-east, eu-west, ap-south; region=R,zone=R-a..c) with\n" +
			"simulated round trips between regions in their Raft and gRPC traffic (--latencies, default\n" +
			"us-east/eu-west=70ms,us-east/ap-south=180ms,eu-west/ap-south=120ms), prints where replicas and leases\n" +
			"are, and runs a workload from a client in --client-region through that region's nodes, printing\n" +
			"ops/s, p50/p99 latency and user-range leases per region every --summary-interval. With several\n" +
			"--client-region, the client moves to the next one every --move-every."},
	{name: "kv", summary: "read and write keys through any node (--host)",
		forms: []string{
			"kv get KEY [--host HOST:PORT] [--read-mode strong|bounded-staleness|causal] [--max-staleness D] [--bookmark HEX[,HEX...]] [--bookmark-timeout D]",
			"kv put KEY VALUE",
			"kv del KEY",
			"kv scan [START [END]] [--limit N] [--reverse] [--keys-only] [--read-mode strong|bounded-staleness|causal] [--max-staleness D] [--bookmark HEX[,HEX...]] [--bookmark-timeout D]",
			"kv incr KEY [DELTA]",
		},
		details: "Keys and values that are not printable are shown Go-quoted (\"\\xff\\n\").\n" + dashNote},
	{name: "range", summary: "inspect and manage ranges (--host: the node to ask)",
		forms: []string{
			"range list [--verbose] [--host HOST:PORT]",
			"range split KEY",
			"range merge KEY",
			"range transfer-lease RANGE NODE",
			"range add-replica RANGE NODE",
			"range remove-replica RANGE NODE",
			"range relocate RANGE NODE,NODE,...",
			"range explain RANGE",
		},
		details: "list shows the ranges with a replica on the asked node. split splits the range holding KEY at KEY;\n" +
			"merge merges the range holding KEY with its right neighbour; transfer-lease moves the lease of\n" +
			"RANGE (r7) to NODE (n2), asked of any node. add-replica adds a replica on NODE (it joins as a\n" +
			"non-voter, gets a snapshot and is promoted); remove-replica removes NODE's replica (its node then\n" +
			"deletes it); relocate moves the range's voters to exactly the NODEs, the lease to the first.\n" +
			"explain prints what the allocator would do with RANGE now and why (every candidate node scored\n" +
			"criterion by criterion); it changes nothing."},
	{name: "zone", summary: "zone configs: replicas, constraints, lease preferences per key span (--host: any node)",
		forms: []string{
			"zone set SPAN [--num-replicas N] [--num-voters N] [--num-non-voters N] [--constraints C] [--voter-constraints C] [--non-voter-constraints C] [--lease-preferences P] [--range-min-bytes B] [--range-max-bytes B] [--gc-ttl D] [--dry-run]",
			"zone get KEY",
			"zone list",
		},
		details: "SPAN is default, START..END or START.. (client keys; END exclusive). set splits the ranges at the\n" +
			"span's bounds and stores the fields given (the others are inherited from an enclosing span, then the\n" +
			"default zone, whose replica count is the replication factor setting); the replicate queues move\n" +
			"replicas and leases to match. Constraints: +key=value (required), -key=value (prohibited), or\n" +
			"{\"+region=eu\":2} for a count; lease preferences: [+region=us] (first satisfiable wins). Non-voters:\n" +
			"num-replicas = num-voters + num-non-voters (set two of them), placed by --non-voter-constraints. A valid\n" +
			"config no node layout satisfies is stored and reported. --dry-run shows the allocator's first step\n" +
			"per range without changing anything. get shows the resolved config a KEY is under."},
	{name: "allocator", summary: "what the replicate queues would do now (--host: any node)",
		forms: []string{"allocator plan [--host HOST:PORT]"},
		details: "plan lists the replica changes every node's replicate queue would make now, at the node holding\n" +
			"each range's lease, with the allocator's reasons, and the ranges that need a change no queue makes\n" +
			"now (and why); it changes nothing. `range explain RANGE` shows one range's decision in full."},
	{name: "node", summary: "list, show, drain, decommission and recommission nodes (--host: any node)",
		forms: []string{
			"node list [--host HOST:PORT]",
			"node status NODE",
			"node drain NODE [--timeout D]",
			"node decommission NODE [NODE...] [--wait=false] [--timeout D] [--poll D]",
			"node recommission NODE",
		},
		details: "list shows every node of the directory: addresses, locality, liveness (live; suspect: its liveness\n" +
			"record expired less than --time-until-store-dead ago; dead; unknown: never started), epoch, membership\n" +
			"(active, draining, decommissioning, decommissioned), and the replicas, valid leases and bytes the node\n" +
			"reports; read replicas are listed apart, with their applied-index lag and whiteboard entry. status\n" +
			"shows NODE (n4), its role and lag. drain makes a running NODE hand its leases to other nodes and take no\n" +
			"new one until it restarts; it returns once NODE holds no lease. decommission retires nodes (which may\n" +
			"be down): refused if the nodes left cannot hold the replication factor; it drains them, the replicate\n" +
			"queue moves their replicas away while it prints the replicas left, and once none is left it marks them\n" +
			"decommissioned (stopping them then leaves no range under-replicated). recommission undoes a\n" +
			"decommission that has not finished."},
	{name: "txn", summary: "list the transactions a node coordinates (--host: that node)",
		forms: []string{"txn list [--host HOST:PORT]"},
		details: "list shows the open transactions the asked node coordinates (oldest first): ID, age, anchor key (where\n" +
			"its record lives; - until it writes), read and write timestamps, spans written, and the transaction whose\n" +
			"intents its request in flight waits on, at which keys, for how long."},
	{name: "backup", summary: "back up the keyspace at one timestamp, verify and release backups (--host: any node)",
		forms: []string{
			"backup --to DIR [--as-of TS] [--incremental-from DIR] [--host HOST:PORT]",
			"backup verify DIR",
			"backup release DIR | --id ID",
			"backup protections",
		},
		details: "A backup holds every key at one timestamp (--as-of: @SECONDS.NANOS[,LOGICAL] as `kv put` prints it, or\n" +
			"wall nanoseconds; default now - 5s) in checksummed data files and a manifest; --incremental-from holds\n" +
			"only the changes (deletions included) since a previous backup. The newest backup of a chain keeps its\n" +
			"timestamp protected from GC (so the next incremental can read from it) until the next incremental\n" +
			"replaces it or release drops it (--id: a record whose backup never finished; protections lists them).\n" +
			"verify checks the manifests and every file's size, SHA-256 and records, of DIR and of the backups\n" +
			"before it in its chain (what a restore reads)."},
	{name: "restore", summary: "load a backup (and the chain before it) into an empty cluster",
		forms: []string{"restore --from DIR [--host HOST:PORT]"},
		details: "Every file of the chain is checked and the cluster must hold no user key before anything is written;\n" +
			"then the full backup and each incremental are applied in order through the KV write path."},
	{name: "workload", summary: "drive load against a running cluster",
		forms:   []string{"workload run kv|ycsb [--hosts A,B,C] [flags]"},
		details: workloadUsage},
	{name: "cert", summary: "create and list the CA, node and client certificates (mTLS)",
		forms: []string{
			"cert create-ca --ca-key FILE [--certs-dir DIR] [--lifetime D] [--overwrite]",
			"cert create-node HOST... --ca-key FILE [--certs-dir DIR] [--lifetime D] [--overwrite]",
			"cert create-client USER --ca-key FILE [--admin] [--certs-dir DIR] [--lifetime D] [--overwrite]",
			"cert list [--certs-dir DIR]",
		},
		details: certDetails},
}

func findCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// topUsage is the top-level usage text.
func topUsage() string {
	var b strings.Builder
	b.WriteString("rangestore: a multi-raft range store\n\nUsage:\n")
	for _, c := range commands {
		for _, f := range c.forms {
			fmt.Fprintf(&b, "  rangestore %s\n", f)
		}
	}
	b.WriteString("\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString("\n" + securityNote + "\n")
	b.WriteString(dashNote + "\n")
	b.WriteString("Run \"rangestore COMMAND --help\" (or \"rangestore help COMMAND\") for the flags of a command.\n")
	return b.String()
}

// printCommandHelp prints a command's forms, details and flags.
func printCommandHelp(w io.Writer, c *command, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "%s\n\nUsage:\n", c.summary)
	for _, f := range c.forms {
		fmt.Fprintf(w, "  rangestore %s\n", f)
	}
	if c.details != "" {
		fmt.Fprintf(w, "\n%s\n", c.details)
	}
	if fs != nil && fs.HasFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", fs.FlagUsages())
	}
}

// usageError is a mistake in the command line: exit 2 with a pointer to
// the command's --help.
type usageError struct {
	cmd string
	err error
}

func (e *usageError) Error() string { return e.err.Error() }

func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// newFlagSet returns the flag set of a command. pflag itself prints
// nothing: parseFlags prints help on --help, and run reports errors.
func newFlagSet(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// negPlaceholder stands in for a negative number while pflag parses: it
// holds a NUL byte, which no command-line argument can contain.
const negPlaceholder = "\x00neg"

// parseFlags parses a command's flags. Arguments that are negative numbers
// ("-1", "-2.5") are positional, not flags (unless they are the value of
// the flag before them). --help prints the command's help to stdout and
// returns pflag.ErrHelp (exit 0).
func parseFlags(fs *pflag.FlagSet, args []string) error {
	var negs []string
	in := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			in = append(in, args[i:]...)
			break
		}
		if takesValue(fs, a) && i+1 < len(args) {
			in = append(in, a, args[i+1])
			i++
			continue
		}
		if isNegativeNumber(a) {
			in = append(in, negPlaceholder+strconv.Itoa(len(negs)))
			negs = append(negs, a)
			continue
		}
		in = append(in, a)
	}
	err := fs.Parse(in)
	if errors.Is(err, pflag.ErrHelp) {
		if c := findCommand(fs.Name()); c != nil {
			printCommandHelp(stdout, c, fs)
		}
		return err
	}
	if err != nil {
		return &usageError{cmd: fs.Name(), err: err}
	}
	if len(negs) > 0 {
		rest := fs.Args()
		for i, a := range rest {
			if strings.HasPrefix(a, negPlaceholder) {
				n, _ := strconv.Atoi(a[len(negPlaceholder):])
				rest[i] = negs[n]
			}
		}
	}
	return nil
}

func isNegativeNumber(a string) bool {
	if len(a) < 2 || a[0] != '-' || (a[1] < '0' || a[1] > '9') && a[1] != '.' {
		return false
	}
	_, err := strconv.ParseFloat(a, 64)
	return err == nil
}

// takesValue reports whether a is a flag given without "=" whose value is
// the next argument ("--limit 5", "-n 5").
func takesValue(fs *pflag.FlagSet, a string) bool {
	var f *pflag.Flag
	switch {
	case strings.HasPrefix(a, "--") && len(a) > 2 && !strings.Contains(a, "="):
		f = fs.Lookup(a[2:])
	case len(a) == 2 && a[0] == '-' && a[1] != '-':
		f = fs.ShorthandLookup(a[1:])
	}
	return f != nil && f.NoOptDefVal == ""
}

// run runs the command line (without the program name) and returns the
// exit code: 0 success or help, 1 failure, 2 usage error.
func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage())
		return 2
	}
	switch args[0] {
	case "help", "-h", "--help":
		if len(args) > 1 {
			if c := findCommand(args[1]); c != nil {
				return run([]string{c.name, "--help"})
			}
			fmt.Fprintf(stderr, "rangestore: unknown command %q\n\n%s", args[1], topUsage())
			return 2
		}
		fmt.Fprint(stdout, topUsage())
		return 0
	}
	c := findCommand(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "rangestore: unknown command %q\n\n%s", args[0], topUsage())
		return 2
	}
	err := runner(c.name)(args[1:])
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "rangestore %s: %v\nRun \"rangestore %s --help\" for usage.\n", c.name, err, c.name)
		return 2
	default:
		fmt.Fprintf(stderr, "rangestore %s: %v\n", c.name, err)
		return 1
	}
}

// quoted prints b as is when it is printable UTF-8 without spaces that
// would break a table, and Go-quoted (%q) otherwise.
func quoted(b []byte) string {
	if !utf8.Valid(b) {
		return strconv.Quote(string(b))
	}
	for _, r := range string(b) {
		if !strconv.IsPrint(r) || r == ' ' {
			return strconv.Quote(string(b))
		}
	}
	if len(b) > 0 && b[0] == '"' {
		return strconv.Quote(string(b))
	}
	return string(b)
}

// plural returns "1 key" or "n keys".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// checkHostPort validates a HOST:PORT flag value.
func checkHostPort(flag, v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flag, v, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%s %q: port %q is not a number 0-65535", flag, v, port)
	}
	_ = host
	return nil
}

// checkStartAddrs validates start's address flags before anything is
// created.
func checkStartAddrs(listen, raft, httpAddr string, join []string) error {
	if err := checkHostPort("--listen-addr", listen); err != nil {
		return err
	}
	if raft != "" {
		if err := checkHostPort("--raft-addr", raft); err != nil {
			return err
		}
	}
	if httpAddr != "" {
		if err := checkHostPort("--http-addr", httpAddr); err != nil {
			return err
		}
	}
	for _, j := range join {
		if err := checkHostPort("--join", j); err != nil {
			return err
		}
	}
	return nil
}
