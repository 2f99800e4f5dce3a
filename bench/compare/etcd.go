package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// runEtcdMember is the `etcd-member` subcommand: one embedded etcd member in
// this process, until SIGTERM.
func runEtcdMember(args []string) error {
	fs := pflag.NewFlagSet("etcd-member", pflag.ContinueOnError)
	name := fs.String("name", "m1", "member name")
	dir := fs.String("dir", "", "data directory")
	client := fs.String("client-url", "", "client URL")
	peer := fs.String("peer-url", "", "peer URL")
	cluster := fs.String("initial-cluster", "", "name=peerURL,...")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cu, err := url.Parse(*client)
	if err != nil {
		return err
	}
	pu, err := url.Parse(*peer)
	if err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = *name, *dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = *cluster
	cfg.InitialClusterToken = "bench"
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		return fmt.Errorf("member %s not ready after 60s", *name)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
	case err := <-e.Err():
		return err
	}
	return nil
}

// startEtcd launches three etcd-member processes (this binary re-executed)
// and returns their client URLs.
func startEtcd(dir string) (*procGroup, []string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	var clients, peers, cluster []string
	for i := 0; i < 3; i++ {
		c, err := freeAddr()
		if err != nil {
			return nil, nil, err
		}
		p, err := freeAddr()
		if err != nil {
			return nil, nil, err
		}
		clients = append(clients, "http://"+c)
		peers = append(peers, "http://"+p)
		cluster = append(cluster, fmt.Sprintf("m%d=http://%s", i+1, p))
	}
	g := &procGroup{}
	for i := 0; i < 3; i++ {
		err := g.start(filepath.Join(dir, fmt.Sprintf("etcd-m%d.log", i+1)), self, "etcd-member",
			"--name", fmt.Sprintf("m%d", i+1), "--dir", filepath.Join(dir, fmt.Sprintf("etcd-m%d", i+1)),
			"--client-url", clients[i], "--peer-url", peers[i], "--initial-cluster", strings.Join(cluster, ","))
		if err != nil {
			g.stop()
			return nil, nil, err
		}
	}
	return g, clients, nil
}

// etcdDriver adapts clientv3 to bench.Driver. Gets are linearizable (the
// clientv3 default).
type etcdDriver struct {
	cli *clientv3.Client
}

func newEtcdDriver(endpoints []string) (*etcdDriver, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	return &etcdDriver{cli: cli}, nil
}

func (d *etcdDriver) Get(ctx context.Context, key []byte) (bool, error) {
	r, err := d.cli.Get(ctx, string(key))
	if err != nil {
		return false, err
	}
	return len(r.Kvs) > 0, nil
}

func (d *etcdDriver) Put(ctx context.Context, key, value []byte) error {
	_, err := d.cli.Put(ctx, string(key), string(value))
	return err
}

func (d *etcdDriver) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	r, err := d.cli.Get(ctx, string(start), clientv3.WithFromKey(), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return 0, err
	}
	return len(r.Kvs), nil
}

func (d *etcdDriver) PutBatch(ctx context.Context, keys, values [][]byte) error {
	ops := make([]clientv3.Op, len(keys))
	for i := range keys {
		ops[i] = clientv3.OpPut(string(keys[i]), string(values[i]))
	}
	_, err := d.cli.Txn(ctx).Then(ops...).Commit()
	return err
}

func (d *etcdDriver) Close() error { return d.cli.Close() }
