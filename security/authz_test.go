package security

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"text/tabwriter"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/rangestore/rangestore/internal/golden"
	"github.com/rangestore/rangestore/proto/rspb"
)

// protoPackage is the package of rangestore's services in proto/.
const protoPackage = "rangestore.v1"

// rangestoreServices lists every service of proto/ from the protobuf
// registry (so a service added there shows up here without a test edit),
// each with the full names of its methods.
func rangestoreServices(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	protoregistry.GlobalFiles.RangeFilesByPackage(protoPackage, func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				out[string(sd.FullName())] = append(out[string(sd.FullName())], fmt.Sprintf("/%s/%s", sd.FullName(), sd.Methods().Get(j).Name()))
			}
		}
		return true
	})
	// The generated _ServiceDescs registered on a node are among them.
	for _, d := range []grpc.ServiceDesc{rspb.KV_ServiceDesc, rspb.Internal_ServiceDesc, rspb.Admin_ServiceDesc, rspb.Backup_ServiceDesc, rspb.Discovery_ServiceDesc} {
		if len(out[d.ServiceName]) != len(d.Methods)+len(d.Streams) {
			t.Fatalf("the protobuf registry lists %d methods of %s, its _ServiceDesc %d", len(out[d.ServiceName]), d.ServiceName, len(d.Methods)+len(d.Streams))
		}
	}
	return out
}

func descMethods(d grpc.ServiceDesc) []string {
	var out []string
	for _, m := range d.Methods {
		out = append(out, "/"+d.ServiceName+"/"+m.MethodName)
	}
	for _, s := range d.Streams {
		out = append(out, "/"+d.ServiceName+"/"+s.StreamName)
	}
	return out
}

// TestEveryServiceHasARule: every service of proto/ (and health and
// reflection, which a node registers too) has a rule, and every rule
// names a service or method that exists. A new service fails here until
// authz.go says who may call it.
func TestEveryServiceHasARule(t *testing.T) {
	svcs := rangestoreServices(t)
	if len(svcs) < 5 {
		t.Fatalf("found only %d services in package %s", len(svcs), protoPackage)
	}
	for _, d := range []grpc.ServiceDesc{healthpb.Health_ServiceDesc, reflectionv1.ServerReflection_ServiceDesc, reflectionv1alpha.ServerReflection_ServiceDesc} {
		svcs[d.ServiceName] = descMethods(d)
	}
	for svc := range svcs {
		if _, ok := serviceRules[svc]; !ok {
			t.Errorf("service %s has no rule in serviceRules (security/authz.go): decide who may call it", svc)
		}
	}
	for svc := range serviceRules {
		if _, ok := svcs[svc]; !ok {
			t.Errorf("serviceRules names %s, which is not a service", svc)
		}
	}
	for m := range methodRules {
		svc, _, _ := strings.Cut(strings.TrimPrefix(m, "/"), "/")
		if !slices.Contains(svcs[svc], m) {
			t.Errorf("methodRules names %s, which is not a method", m)
		}
	}
}

// identities are the callers of the tables: no certificate, a node, a
// client, an admin client (OU admin), root.
var identities = []struct {
	name string
	id   Identity
}{
	{"none", Identity{}},
	{"node", IdentityOf(&x509.Certificate{Subject: pkix.Name{CommonName: "node"}})},
	{"alice", IdentityOf(&x509.Certificate{Subject: pkix.Name{CommonName: "alice"}})},
	{"bob(admin)", IdentityOf(&x509.Certificate{Subject: pkix.Name{CommonName: "bob", OrganizationalUnit: []string{AdminOU}}})},
	{"root", IdentityOf(&x509.Certificate{Subject: pkix.Name{CommonName: "root"}})},
}

// TestAuthorizeGolden: the verdict of Authorize for every method of every
// service a node serves, and a few that do not exist, for each kind of
// caller (testdata/authorize.golden; -rewrite regenerates it).
func TestAuthorizeGolden(t *testing.T) {
	var methods []string
	for _, ms := range rangestoreServices(t) {
		methods = append(methods, ms...)
	}
	for _, d := range []grpc.ServiceDesc{healthpb.Health_ServiceDesc, reflectionv1.ServerReflection_ServiceDesc, reflectionv1alpha.ServerReflection_ServiceDesc} {
		methods = append(methods, descMethods(d)...)
	}
	sort.Strings(methods)
	methods = append(methods, "/rangestore.v1.NoSuchService/Get", "/rangestore.v1.KV", "rangestore.v1.KV/Get", "")
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 1, ' ', 0)
	fmt.Fprint(w, "method")
	for _, id := range identities {
		fmt.Fprintf(w, "\t%s", id.name)
	}
	fmt.Fprintln(w)
	for _, m := range methods {
		fmt.Fprintf(w, "%q", m)
		for _, id := range identities {
			fmt.Fprintf(w, "\t%s", status.Code(Authorize(id.id, m)))
		}
		fmt.Fprintln(w)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "authorize.golden", []byte(b.String()))
}

// TestAuthorizeMessages: the cases, with the codes and messages a
// caller sees.
func TestAuthorizeMessages(t *testing.T) {
	id := func(name string) Identity {
		for _, i := range identities {
			if i.name == name {
				return i.id
			}
		}
		t.Fatalf("no identity %s", name)
		return Identity{}
	}
	for _, tc := range []struct {
		who, method string
		code        codes.Code
		want        string
	}{
		{"alice", "/rangestore.v1.KV/Put", codes.OK, ""},
		{"alice", "/rangestore.v1.Discovery/GetRoutingTable", codes.OK, ""},
		{"alice", "/rangestore.v1.Internal/RangeBatch", codes.PermissionDenied,
			`user "alice" may not call /rangestore.v1.Internal/RangeBatch: only nodes (a node certificate, CN "node") may call it`},
		{"alice", "/rangestore.v1.Admin/TransferLease", codes.PermissionDenied,
			`user "alice" may not call /rangestore.v1.Admin/TransferLease: only nodes (a node certificate, CN "node") and root or an admin client certificate (cert create-client --admin) may call it`},
		{"alice", "/rangestore.v1.Backup/Export", codes.PermissionDenied, `user "alice" may not call /rangestore.v1.Backup/Export: only root or an admin client certificate`},
		{"bob(admin)", "/rangestore.v1.Admin/SplitRange", codes.OK, ""},
		{"root", "/rangestore.v1.Admin/TransferLease", codes.OK, ""},
		{"root", "/rangestore.v1.Internal/Bootstrap", codes.PermissionDenied, `user "root" may not call /rangestore.v1.Internal/Bootstrap: only nodes`},
		{"node", "/rangestore.v1.Internal/RangeBatch", codes.OK, ""},
		{"node", "/rangestore.v1.Admin/Ranges", codes.OK, ""},
		{"node", "/rangestore.v1.KV/Get", codes.PermissionDenied,
			`user "node" may not call /rangestore.v1.KV/Get: only clients (a client certificate; a node certificate is for node-to-node traffic only) may call it`},
		{"node", "/rangestore.v1.Admin/SplitRange", codes.PermissionDenied, `user "node" may not call /rangestore.v1.Admin/SplitRange: only root or an admin client certificate`},
		{"none", "/grpc.health.v1.Health/Check", codes.OK, ""},
		{"none", "/rangestore.v1.KV/Get", codes.Unauthenticated, "/rangestore.v1.KV/Get needs a verified client certificate"},
		{"root", "/rangestore.v1.Nope/X", codes.PermissionDenied, `user "root" may not call /rangestore.v1.Nope/X: no rule allows it`},
	} {
		err := Authorize(id(tc.who), tc.method)
		if status.Code(err) != tc.code || tc.want != "" && !strings.Contains(status.Convert(err).Message(), tc.want) {
			t.Errorf("%s calls %s: %v; want %s %q", tc.who, tc.method, err, tc.code, tc.want)
		}
	}
}
