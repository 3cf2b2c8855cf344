package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// ServerTLS is the TLS configuration a daemon serves with: TLS 1.3 only, our
// certificate, and a client certificate required and verified against the
// realm CA (chain, dates, client-auth key usage) that must carry an abs
// identity. Any role may connect; each RPC handler decides who may call it
// with Authorize. For gRPC: credentials.NewTLS(c.ServerTLS()).
func (c *Credentials) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    c.CA,
		VerifyConnection: func(cs tls.ConnectionState) error {
			// crypto/tls has verified the chain; refuse at the handshake a
			// certificate of the realm that names no abs identity.
			if len(cs.PeerCertificates) == 0 {
				return errors.New("client presented no certificate")
			}
			_, err := IdentityFromCert(cs.PeerCertificates[0])
			return err
		},
	}
}

// ClientTLS is the TLS configuration to call a peer with: TLS 1.3 only, our
// certificate presented, and the server's certificate verified against the
// realm CA, for server-auth use, and required to carry role expect.
//
// The server's host name is deliberately not checked. In abs a peer is who its
// certificate says it is, (realm CA, role, name), not where it is reached:
// masters move between hosts (DESIGN.md §8), slaves are dialled by whatever
// address a config or a registration gave, often an IP, and a certificate's
// host names would go stale with every move. crypto/tls can only verify a
// chain together with a host name, so InsecureSkipVerify turns its check off
// and VerifyConnection does the same verification without the host name:
// the full x509 chain against the CA pool, dates and the server-auth key
// usage (which an operator certificate lacks), then the role. VerifyConnection
// runs on every handshake, resumed ones included, so nothing is skipped.
func (c *Credentials) ClientTLS(expect Role) *tls.Config {
	pool := c.CA
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{c.Cert},
		InsecureSkipVerify: true, // see above: VerifyConnection verifies everything but the host name
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := verifyPeer(cs, pool, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			if id.Role != expect {
				return fmt.Errorf("server presents a %s certificate (name %s); expected a %s", id.Role, id.Name, expect)
			}
			return nil
		},
	}
}

// verifyPeer verifies the peer's chain against roots for usage and returns the
// identity in its leaf.
func verifyPeer(cs tls.ConnectionState, roots *x509.CertPool, usage x509.ExtKeyUsage) (Identity, error) {
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, errors.New("no certificate presented")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}); err != nil {
		return Identity{}, err
	}
	return IdentityFromCert(leaf)
}

// PeerIdentity returns the identity of the caller of a gRPC handler, from the
// client certificate that ServerTLS verified. It is an error when the call did
// not come over TLS with a verified client certificate.
func PeerIdentity(ctx context.Context) (Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, errors.New("no peer in the call context")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Identity{}, fmt.Errorf("call from %s did not come over TLS", p.Addr)
	}
	chains := info.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return Identity{}, fmt.Errorf("call from %s has no verified client certificate", p.Addr)
	}
	return IdentityFromCert(chains[0][0])
}

// Authorize returns the caller's identity if its role is one of allowed. It
// fails with a gRPC status error a handler can return as it is:
// codes.Unauthenticated when the caller has no identity, codes.PermissionDenied
// ("operator certificate alice cannot call this (needs role slave)") when its
// role is not allowed; the identity is returned then too, for logging.
// With no allowed roles nobody may call.
func Authorize(ctx context.Context, allowed ...Role) (Identity, error) {
	id, err := PeerIdentity(ctx)
	if err != nil {
		return Identity{}, status.Error(codes.Unauthenticated, err.Error())
	}
	if slices.Contains(allowed, id.Role) {
		return id, nil
	}
	needs := "nobody may"
	if len(allowed) > 0 {
		names := make([]string, len(allowed))
		for i, r := range allowed {
			names[i] = string(r)
		}
		needs = "needs role " + strings.Join(names, " or ")
	}
	return id, status.Errorf(codes.PermissionDenied, "%s certificate %s cannot call this (%s)", id.Role, id.Name, needs)
}
