package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// handshake runs one TLS connection over loopback and returns what each side
// saw. The client writes a byte and reads one back, because in TLS 1.3 the
// client learns that the server rejected its certificate only when it reads.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error, peer []*x509.Certificate) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		err  error
		peer []*x509.Certificate
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(c, server)
		if err := s.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		buf := make([]byte, 1)
		if _, err := s.Read(buf); err != nil {
			done <- result{err: err}
			return
		}
		_, err = s.Write(buf)
		done <- result{err: err, peer: s.ConnectionState().VerifiedChains[0]}
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := tls.Client(c, client)
	clientErr = cl.Handshake()
	if clientErr == nil {
		if _, clientErr = cl.Write([]byte{1}); clientErr == nil {
			_, clientErr = cl.Read(make([]byte, 1))
		}
	}
	cl.Close()
	r := <-done
	return r.err, clientErr, r.peer
}

// presenting makes cfg present cert whatever the server asks for. crypto/tls
// would not send a certificate the server's CA list does not cover, but an
// intruder's client may.
func presenting(cfg *tls.Config, cert tls.Certificate) *tls.Config {
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return cfg
}

func TestMutualTLS(t *testing.T) {
	r := newRealm(t)
	creds := map[string]*Credentials{}
	for _, n := range []string{"green-acres", "tape1", "alice", "mallory", "fake-master"} {
		creds[n] = r.creds(t, n)
	}
	noCert := creds["alice"].ClientTLS(RoleMaster)
	noCert.Certificates = nil
	intruder := presenting(creds["alice"].ClientTLS(RoleMaster), creds["mallory"].Cert)

	// An expired certificate of a CA the server trusts; LoadCredentials would
	// refuse it, so it is loaded by hand, as a stale file on a peer would be.
	past := time.Now().AddDate(-3, 0, 0)
	oldCA := filepath.Join(t.TempDir(), "ca")
	must(t, InitCA(oldCA, "athena", past))
	oldDir := filepath.Join(t.TempDir(), "old")
	must(t, Issue(oldCA, RoleOperator, "old", oldDir, nil, past))
	serverDir := filepath.Join(t.TempDir(), "m")
	must(t, Issue(oldCA, RoleMaster, "m", serverDir, nil, time.Now()))
	oldServer, err := LoadCredentials(serverDir)
	must(t, err)
	oldCert, err := tls.LoadX509KeyPair(filepath.Join(oldDir, CertFile), filepath.Join(oldDir, KeyFile))
	must(t, err)
	expired := oldServer.ClientTLS(RoleMaster)
	expired.Certificates = []tls.Certificate{oldCert}

	for _, tc := range []struct {
		name      string
		server    *tls.Config
		client    *tls.Config
		serverErr string // "" = must succeed
		clientErr string
		peerName  string
	}{
		{"operator to master", creds["green-acres"].ServerTLS(), creds["alice"].ClientTLS(RoleMaster), "", "", "alice"},
		{"slave to master", creds["green-acres"].ServerTLS(), creds["tape1"].ClientTLS(RoleMaster), "", "", "tape1"},
		{"master to slave", creds["tape1"].ServerTLS(), creds["green-acres"].ClientTLS(RoleSlave), "", "", "green-acres"},
		{"client of another CA", creds["green-acres"].ServerTLS(), intruder,
			"certificate signed by unknown authority", "unknown certificate authority", ""},
		{"client without certificate", creds["green-acres"].ServerTLS(), noCert,
			"client didn't provide a certificate", "certificate required", ""},
		{"expired client certificate", oldServer.ServerTLS(), expired,
			"certificate has expired", "expired certificate", ""},
		{"server of another CA", creds["fake-master"].ServerTLS(), creds["alice"].ClientTLS(RoleMaster),
			"bad certificate", "server certificate: x509: certificate signed by unknown authority", ""},
		{"server with the wrong role", creds["tape1"].ServerTLS(), creds["alice"].ClientTLS(RoleMaster),
			"bad certificate", "server presents a slave certificate (name tape1); expected a master", ""},
		{"operator certificate cannot serve", creds["alice"].ServerTLS(), creds["green-acres"].ClientTLS(RoleOperator),
			"bad certificate", "server certificate: x509: certificate specifies an incompatible key usage", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serverErr, clientErr, peer := handshake(t, tc.server, tc.client)
			check := func(side string, err error, want string) {
				t.Helper()
				switch {
				case want == "" && err != nil:
					t.Errorf("%s: %v", side, err)
				case want != "" && err == nil:
					t.Errorf("%s: no error, want %q", side, want)
				case want != "" && !strings.Contains(err.Error(), want):
					t.Errorf("%s: got %q, want %q", side, err, want)
				}
			}
			check("server", serverErr, tc.serverErr)
			check("client", clientErr, tc.clientErr)
			if tc.peerName != "" && (len(peer) == 0 || peer[0].Subject.CommonName != tc.peerName) {
				t.Errorf("server saw peer %v, want %s", peer, tc.peerName)
			}
		})
	}
}

// probeService is a tiny gRPC service whose methods only some roles may call,
// enforced by an interceptor with Authorize, as the real services do.
var probePolicy = map[string][]Role{
	"/abs.test.Probe/SlaveOnly":    {RoleSlave},
	"/abs.test.Probe/OperatorOnly": {RoleOperator},
	"/abs.test.Probe/Anyone":       {RoleMaster, RoleSlave, RoleOperator},
}

func whoami(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
	in := new(emptypb.Empty)
	if err := dec(in); err != nil {
		return nil, err
	}
	h := func(ctx context.Context, _ any) (any, error) {
		id, err := PeerIdentity(ctx)
		if err != nil {
			return nil, err
		}
		return wrapperspb.String(id.String()), nil
	}
	if ic == nil {
		return h(ctx, in)
	}
	method, _ := grpc.Method(ctx)
	return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: method}, h)
}

var probeDesc = grpc.ServiceDesc{
	ServiceName: "abs.test.Probe",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "SlaveOnly", Handler: whoami},
		{MethodName: "OperatorOnly", Handler: whoami},
		{MethodName: "Anyone", Handler: whoami},
	},
}

func authorizeInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if _, err := Authorize(ctx, probePolicy[info.FullMethod]...); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func TestGRPCAuthorize(t *testing.T) {
	r := newRealm(t)
	master := r.creds(t, "green-acres")
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(master.ServerTLS())),
		grpc.UnaryInterceptor(authorizeInterceptor),
	)
	srv.RegisterService(&probeDesc, struct{}{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	go srv.Serve(ln)
	defer srv.Stop()

	call := func(name string, expect Role, method string) (string, error) {
		t.Helper()
		cfg := r.creds(t, name).ClientTLS(expect)
		if name == "mallory" {
			cfg = presenting(r.creds(t, "alice").ClientTLS(expect), r.creds(t, "mallory").Cert)
		}
		conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		must(t, err)
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out := new(wrapperspb.StringValue)
		err = conn.Invoke(ctx, "/abs.test.Probe/"+method, new(emptypb.Empty), out)
		return out.GetValue(), err
	}

	for _, tc := range []struct {
		client string
		expect Role
		method string
		code   codes.Code
		want   string // the reply, or the start of the error message
	}{
		{"tape1", RoleMaster, "SlaveOnly", codes.OK, "slave tape1"},
		{"alice", RoleMaster, "OperatorOnly", codes.OK, "operator alice"},
		{"green-acres", RoleMaster, "Anyone", codes.OK, "master green-acres"},
		{"alice", RoleMaster, "SlaveOnly", codes.PermissionDenied, "operator certificate alice cannot call this (needs role slave)"},
		{"tape1", RoleMaster, "OperatorOnly", codes.PermissionDenied, "slave certificate tape1 cannot call this (needs role operator)"},
		{"green-acres", RoleMaster, "Unlisted", codes.Unimplemented, "unknown method Unlisted"},
		{"mallory", RoleMaster, "Anyone", codes.Unavailable, ""},
		{"alice", RoleSlave, "Anyone", codes.Unavailable, ""},
	} {
		got, err := call(tc.client, tc.expect, tc.method)
		st := status.Convert(err)
		if st.Code() != tc.code {
			t.Errorf("%s (expecting %s) calls %s: code %v (%v), want %v", tc.client, tc.expect, tc.method, st.Code(), err, tc.code)
			continue
		}
		if tc.code == codes.OK && got != tc.want || tc.code != codes.OK && !strings.HasPrefix(st.Message(), tc.want) {
			t.Errorf("%s calls %s: got %q / %q, want %q", tc.client, tc.method, got, st.Message(), tc.want)
		}
		if tc.client == "alice" && tc.expect == RoleSlave && !strings.Contains(st.Message(), "server presents a master certificate (name green-acres); expected a slave") {
			t.Errorf("refusal of the server's role: %q", st.Message())
		}
	}
}

func TestAuthorizeWithoutPeer(t *testing.T) {
	_, err := Authorize(context.Background(), RoleOperator)
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != "no peer in the call context" {
		t.Errorf("got %v", err)
	}
	if _, err := PeerIdentity(context.Background()); err == nil {
		t.Error("PeerIdentity without a peer")
	}
}
