package main

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rangestore/rangestore/security"
)

const certDetails = `A certs directory holds ca.crt (the CA certificate), node.crt/node.key (a node's: CN node, its HOSTs
as IP and DNS subject alternative names, for server and client use) and client.USER.crt/.key (a client's:
CN USER). Keys are written 0600 and refused at load if group or others can read them. The CA key (--ca-key)
signs certificates; keep it outside the certs directory (nodes do not need it). Lifetimes default to
10y for a CA and 5y for node and client certificates (--lifetime 8760h, 30d or 5y), never past the CA's.
An existing file is not replaced without --overwrite. Roles: a node certificate may call Internal; a
client certificate KV and Discovery; Admin and Backup need user root or --admin.`

// runCert runs cert create-ca | create-node HOST... | create-client USER | list.
func runCert(args []string) error {
	fs := newFlagSet("cert")
	certsDir := fs.String("certs-dir", security.DefaultCertsDir(), "directory of ca.crt, node.crt/.key and client.USER.crt/.key")
	caKey := fs.String("ca-key", "", "the CA's key file (create-*; keep it outside the certs directory)")
	lifetime := fs.String("lifetime", "", "validity of the new certificate: a duration (8760h), days (30d) or years (5y) (default: CA 10y, node and client 5y)")
	overwrite := fs.Bool("overwrite", false, "replace existing certificate and key files")
	admin := fs.Bool("admin", false, "create-client: an admin's certificate (may call Admin and Backup, like root)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a := fs.Args()
	if len(a) == 0 {
		return usagef("cert", "missing sub-command (create-ca, create-node, create-client or list)")
	}
	opts := security.CreateOptions{Overwrite: *overwrite, Admin: *admin}
	if *lifetime != "" {
		d, err := security.ParseLifetime(*lifetime)
		if err != nil {
			return usagef("cert", "--lifetime: %v", err)
		}
		opts.Lifetime = d
	}
	if *admin && a[0] != "create-client" {
		return usagef("cert", "--admin is for create-client only")
	}
	if strings.HasPrefix(a[0], "create-") && *caKey == "" {
		return usagef("cert", "%s needs --ca-key FILE (the CA's key)", a[0])
	}
	switch {
	case a[0] == "create-ca" && len(a) == 1:
		c, err := security.CreateCA(*certsDir, *caKey, opts)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created CA certificate %s and key %s\n", filepath.Join(*certsDir, security.CAFile), *caKey)
		printCreated(c)
		return nil
	case a[0] == "create-node" && len(a) > 1:
		var hosts []string
		for _, h := range a[1:] {
			hosts = append(hosts, strings.Split(h, ",")...)
		}
		c, err := security.CreateNode(*certsDir, *caKey, hosts, opts)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created node certificate %s and key %s for %s\n", filepath.Join(*certsDir, security.NodeCertFile),
			filepath.Join(*certsDir, security.NodeKeyFile), strings.Join(hosts, ", "))
		printCreated(c)
		return nil
	case a[0] == "create-client" && len(a) == 2:
		c, err := security.CreateClient(*certsDir, *caKey, a[1], opts)
		if err != nil {
			return err
		}
		role := ""
		if *admin {
			role = " (admin)"
		}
		fmt.Fprintf(stdout, "created client certificate %s and key %s for user %s%s\n", filepath.Join(*certsDir, security.ClientCertFile(a[1])),
			filepath.Join(*certsDir, security.ClientKeyFile(a[1])), a[1], role)
		printCreated(c)
		return nil
	case a[0] == "list" && len(a) == 1:
		infos, err := security.List(*certsDir)
		if err != nil {
			return err
		}
		if len(infos) == 0 {
			fmt.Fprintf(stdout, "no certificates in %s\n", *certsDir)
			return nil
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "FILE\tKIND\tUSER\tSERIAL\tNOT BEFORE\tNOT AFTER\tHOSTS")
		for _, in := range infos {
			user := in.User
			if in.Admin {
				user += " (admin)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", filepath.Base(in.Path), in.Kind, user, in.Serial,
				certTime(in.NotBefore), certTime(in.NotAfter), strings.Join(in.Hosts, ","))
		}
		return w.Flush()
	case a[0] == "create-node":
		return usagef("cert", "create-node needs the node's hosts (IP addresses and DNS names it is reached at)")
	case a[0] == "create-client":
		return usagef("cert", "create-client needs exactly one USER, got %q", a[1:])
	}
	return usagef("cert", "unknown arguments %q (want create-ca, create-node HOST..., create-client USER or list)", a)
}

func printCreated(c *x509.Certificate) {
	fmt.Fprintf(stdout, "serial %x, valid from %s until %s\n", c.SerialNumber, certTime(c.NotBefore), certTime(c.NotAfter))
}

func certTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") }
