// Command rangestore runs and talks to rangestore nodes.
//
//	rangestore start --store DIR --listen-addr HOST:PORT --join ADDR[,ADDR...] (--certs-dir DIR | --insecure) [flags]
//	rangestore start ... [--range-rebalance-threshold F] [--min-range-rebalance N] [--lease-rebalance-threshold F] [--min-lease-rebalance N] [--qps-rebalance-threshold F]
//	rangestore start ... [--read-replica] [--read-replica-ttl D] [--routing-ttl D]
//	rangestore init [--host HOST:PORT] [--initial-splits N | --split-at K1,K2,...] [--replicas N]
//	rangestore cluster set-replicas N [--host HOST:PORT]
//	rangestore cluster set NAME=VALUE [--host HOST:PORT]
//	rangestore demo [--nodes N] [--store DIR] [--duration D]
//	rangestore demo --global [--client-region R[,R...]] [--move-every D] [--latencies L] [--concurrency N] [--read-percent P] [--summary-interval D]
//	rangestore kv get KEY [--host HOST:PORT] [--read-mode strong|bounded-staleness|causal] [--max-staleness D] [--bookmark HEX[,HEX...]] [--bookmark-timeout D]
//	rangestore kv put KEY VALUE
//	rangestore kv del KEY
//	rangestore kv scan [START [END]] [--limit N] [--reverse] [--keys-only] [--read-mode strong|bounded-staleness|causal] [--max-staleness D] [--bookmark HEX[,HEX...]] [--bookmark-timeout D]
//	rangestore kv incr KEY [DELTA]
//	rangestore range list [--verbose] [--host HOST:PORT]
//	rangestore range split KEY
//	rangestore range merge KEY
//	rangestore range transfer-lease RANGE NODE
//	rangestore range add-replica RANGE NODE
//	rangestore range remove-replica RANGE NODE
//	rangestore range relocate RANGE NODE,NODE,...
//	rangestore range explain RANGE
//	rangestore zone set SPAN [--num-replicas N] [--num-voters N] [--num-non-voters N] [--constraints C] [--voter-constraints C] [--non-voter-constraints C] [--lease-preferences P] [--range-min-bytes B] [--range-max-bytes B] [--gc-ttl D] [--dry-run]
//	rangestore zone get KEY
//	rangestore zone list
//	rangestore allocator plan [--host HOST:PORT]
//	rangestore node list [--host HOST:PORT]
//	rangestore node status NODE
//	rangestore node drain NODE [--timeout D]
//	rangestore node decommission NODE [NODE...] [--wait=false] [--timeout D] [--poll D]
//	rangestore node recommission NODE
//	rangestore txn list [--host HOST:PORT]
//	rangestore backup --to DIR [--as-of TS] [--incremental-from DIR] [--host HOST:PORT]
//	rangestore backup verify DIR
//	rangestore backup release DIR | --id ID
//	rangestore backup protections
//	rangestore restore --from DIR [--host HOST:PORT]
//	rangestore workload run kv|ycsb [--hosts A,B,C] [flags]
//	rangestore cert create-ca --ca-key FILE [--certs-dir DIR] [--lifetime D] [--overwrite]
//	rangestore cert create-node HOST... --ca-key FILE [--certs-dir DIR] [--lifetime D] [--overwrite]
//	rangestore cert create-client USER --ca-key FILE [--admin] [--certs-dir DIR] [--lifetime D] [--overwrite]
//	rangestore cert list [--certs-dir DIR]
//
// Every client command (all but start, demo and cert) takes --certs-dir
// DIR (default ~/.rangestore-certs), --user USER (default root) or
// --insecure; conn.go builds its connection. "rangestore COMMAND --help"
// prints a command's flags. The command table
// is in cli.go; a test keeps this list equal to the printed usage.
package main

import "os"

func main() { os.Exit(run(os.Args[1:])) }
