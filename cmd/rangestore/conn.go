package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/rangestore/rangestore/client"
	"github.com/rangestore/rangestore/security"
)

// defaultHost is --host's default: a node started with no --listen-addr.
const defaultHost = "127.0.0.1:26257"

// secFlags are the connection security flags of every client command:
// --certs-dir, --insecure and --user. One of them is always in force: the
// client certificate of --user in --certs-dir (default root in
// security.DefaultCertsDir), or plaintext with --insecure.
type secFlags struct {
	fs       *pflag.FlagSet
	certsDir *string
	insecure *bool
	user     *string
}

// addSecFlags registers --certs-dir, --insecure and --user on fs.
func addSecFlags(fs *pflag.FlagSet) *secFlags {
	return &secFlags{
		fs:       fs,
		certsDir: fs.String("certs-dir", security.DefaultCertsDir(), "directory of ca.crt and the client certificate client.USER.crt/.key (rangestore cert create-client USER)"),
		insecure: fs.Bool("insecure", false, "connect in plaintext, without a certificate, to nodes started with --insecure"),
		user:     fs.String("user", security.RootUser, "the user whose client certificate (client.USER.crt) identifies this client"),
	}
}

// credentials returns the transport credentials the flags ask for; an
// error names the flag or the file at fault (and how to create it).
func (s *secFlags) credentials() (credentials.TransportCredentials, error) {
	if *s.insecure {
		if s.fs.Changed("certs-dir") {
			return nil, usagef(s.fs.Name(), "--certs-dir and --insecure: give one of them (--insecure connects without certificates)")
		}
		if s.fs.Changed("user") {
			return nil, usagef(s.fs.Name(), "--user %s with --insecure: a plaintext client has no user (--user names the client certificate of --certs-dir)", *s.user)
		}
		return insecure.NewCredentials(), nil
	}
	return clientCredentials(*s.certsDir, *s.user)
}

// clientCredentials loads user's client certificate from certsDir (checked:
// present, private key, valid now, signed by the CA of ca.crt) and returns
// gRPC credentials that dial with it.
func clientCredentials(certsDir, user string) (credentials.TransportCredentials, error) {
	m, err := security.NewManager(security.Config{Dir: certsDir, User: user})
	if err != nil {
		return nil, fmt.Errorf("%w\n(a client connects with --certs-dir DIR holding ca.crt and client.%s.crt/.key, made by rangestore cert create-client %s, or with --insecure to a node started with --insecure)", err, user, user)
	}
	return m.ClientCredentials(), nil
}

// dialOptions are the options of every connection the CLI makes with
// creds: the credentials, a 64 MiB receive limit (scans, range lists) and
// interceptors that explain a TLS/plaintext mismatch with the dialled
// node (explainMismatch).
func dialOptions(creds credentials.TransportCredentials) []grpc.DialOption {
	secure := creds.Info().SecurityProtocol == "tls"
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return explainMismatch(invoker(ctx, method, req, reply, cc, opts...), cc.Target(), secure)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			st, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, explainMismatch(err, cc.Target(), secure)
			}
			return mismatchStream{ClientStream: st, host: cc.Target(), secure: secure}, nil
		}),
	}
}

// mismatchStream explains a mismatch seen on a stream's first receive (a
// stream opens before its connection is up).
type mismatchStream struct {
	grpc.ClientStream
	host   string
	secure bool
}

func (s mismatchStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	return explainMismatch(err, s.host, s.secure)
}

// dialHost connects to host with creds (grpc connects lazily: errors come
// with the first call).
func dialHost(host string, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	return grpc.NewClient(host, dialOptions(creds)...)
}

// target is the node a client command talks to (--host) and how (secFlags).
type target struct {
	host *string
	sec  *secFlags
}

// addTargetFlags registers --host (described by usage) and the security
// flags on fs.
func addTargetFlags(fs *pflag.FlagSet, usage string) *target {
	return &target{host: fs.String("host", defaultHost, usage), sec: addSecFlags(fs)}
}

// dial connects to the target node.
func (t *target) dial() (*grpc.ClientConn, error) {
	creds, err := t.sec.credentials()
	if err != nil {
		return nil, err
	}
	return dialHost(*t.host, creds)
}

// explainMismatch rewords a connection failure (UNAVAILABLE) to host when
// the node speaks the other protocol: a plaintext client at a secure node,
// or a TLS client at an insecure one. grpc alone reports a closed
// connection or a handshake error that names neither. Other errors pass
// unchanged.
func explainMismatch(err error, host string, secure bool) error {
	if status.Code(err) != codes.Unavailable {
		return err
	}
	if why := protocolMismatch(host, secure); why != "" {
		return status.Errorf(codes.Unavailable, "%s (%v)", why, err)
	}
	return err
}

// protocolMismatch says what host speaks and which flag to use when it
// speaks the other protocol than this client (secure: TLS), else "".
func protocolMismatch(host string, secure bool) string {
	switch proto := probeProtocol(host, time.Second); {
	case secure && proto == protoPlaintext:
		return fmt.Sprintf("%s serves plaintext (a node started with --insecure) and this client uses TLS (--certs-dir): "+
			"connect with --insecure, or restart the node with --certs-dir", host)
	case !secure && proto == protoTLS:
		return fmt.Sprintf("%s requires TLS with a client certificate (a node started with --certs-dir) and this client is plaintext (--insecure): "+
			"connect with --certs-dir DIR holding ca.crt and client.USER.crt/.key (rangestore cert create-client USER)", host)
	}
	return ""
}

// openDB opens a client.DB (package client: every request goes straight
// to its range's leaseholder) of the cluster of the nodes at hosts, with
// the credentials the flags ask for and opts. ctx bounds the opening (it
// reads the routing table). When no node answered, a node that speaks the
// other protocol is named as explainMismatch does.
func (s *secFlags) openDB(ctx context.Context, hosts []string, opts ...client.Option) (*client.DB, error) {
	creds, err := s.credentials()
	if err != nil {
		return nil, err
	}
	db, err := client.Open(ctx, hosts, append([]client.Option{client.WithTransportCredentials(creds)}, opts...)...)
	if err == nil {
		return db, nil
	}
	if errors.Is(err, client.ErrUnavailable) {
		secure := creds.Info().SecurityProtocol == "tls"
		for _, h := range hosts {
			if why := protocolMismatch(h, secure); why != "" {
				return nil, fmt.Errorf("%s (%w)", why, err)
			}
		}
	}
	return nil, err
}

// Protocols probeProtocol tells apart.
const (
	protoUnknown   = "unknown" // nothing listens, or neither was recognized
	protoPlaintext = "plaintext"
	protoTLS       = "tls"
)

// probeProtocol finds out what a gRPC port speaks, within d per step. A
// plaintext gRPC server (HTTP/2 without TLS) speaks first: its SETTINGS
// frame arrives without being asked. A TLS server waits for a ClientHello
// and answers with its certificate; the probe trusts no CA, so that the
// handshake stops at the certificate's verification: nothing is sent
// beyond the ClientHello.
func probeProtocol(host string, d time.Duration) string {
	c, err := net.DialTimeout("tcp", host, d)
	if err != nil {
		return protoUnknown
	}
	_ = c.SetReadDeadline(time.Now().Add(d / 2))
	var hdr [9]byte // an HTTP/2 frame header: length(3) type(1) flags(1) stream(4)
	n, _ := io.ReadFull(c, hdr[:])
	_ = c.Close()
	if n > 0 {
		if isHTTP2Settings(hdr[:n]) {
			return protoPlaintext
		}
		return protoUnknown
	}
	c, err = net.DialTimeout("tcp", host, d)
	if err != nil {
		return protoUnknown
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d))
	name, _, _ := net.SplitHostPort(host)
	tc := tls.Client(c, &tls.Config{ServerName: name, RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12})
	var cve *tls.CertificateVerificationError
	if errors.As(tc.Handshake(), &cve) {
		return protoTLS
	}
	return protoUnknown
}

// isHTTP2Settings reports whether b is the header of an HTTP/2 SETTINGS
// frame on stream 0.
func isHTTP2Settings(b []byte) bool {
	return len(b) == 9 && b[3] == 0x4 && b[5]&0x7f == 0 && b[6] == 0 && b[7] == 0 && b[8] == 0
}
