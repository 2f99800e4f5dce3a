// Command rangestore runs and talks to rangestore nodes.
//
//	rangestore start --store DIR --listen-addr HOST:PORT --join A,B,C [--raft-addr] [--http-addr] [--locality k=v,...]
//	rangestore init  --host HOST:PORT [--initial-splits N | --split-at k1,k2] [--replicas N]
//	rangestore demo  [--nodes 3] [--store DIR] [--duration D]
//	rangestore kv get|put|del|scan|incr ... --host HOST:PORT
//	rangestore range list --host HOST:PORT
//	rangestore workload run kv|ycsb --hosts A,B,C
package main

import (
	"fmt"
	"os"
)

const usage = `rangestore: a multi-raft range store

Usage:
  rangestore start  --store DIR --listen-addr HOST:PORT --join ADDR[,ADDR...] [flags]
  rangestore init   --host HOST:PORT [--initial-splits N | --split-at K1,K2,...]
  rangestore demo   [--nodes N] [--store DIR] [--duration D]
  rangestore kv get KEY | put KEY VALUE | del KEY | scan [START [END]] | incr KEY [DELTA]   [--host HOST:PORT]
  rangestore range list | transfer-lease RANGE NODE   [--host HOST:PORT]
  rangestore workload run kv|ycsb [--hosts A,B,C] [flags]

Run "rangestore COMMAND --help" for the flags of a command.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "start":
		err = runStart(args)
	case "init":
		err = runInit(args)
	case "demo":
		err = runDemo(args)
	case "kv":
		err = runKV(args)
	case "range":
		err = runRange(args)
	case "workload":
		err = runWorkload(args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "rangestore: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "rangestore %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
