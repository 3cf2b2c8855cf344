package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Every node of a realm holds, in its certs directory, the realm CA's
// certificate and its own certificate and key. The certificate says who the
// node is: its name in the subject CN, its role in an OU "abs-role:ROLE".
// Peers trust each other because their certificates chain to the same CA;
// they authorize calls by role (Authorize), never by host name.

// File names in a certs directory (a CA directory holds ca.crt and ca.key).
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
	CertFile   = "node.crt"
	KeyFile    = "node.key"
)

const (
	caValidity   = 10 // years
	leafValidity = 2  // years
	// clockSkew backdates NotBefore so that a certificate issued on one host
	// is usable at once on a host whose clock is a little behind.
	clockSkew    = 5 * time.Minute
	roleOUPrefix = "abs-role:"
)

// Role is what a certificate allows its holder to be.
type Role string

const (
	RoleMaster   Role = "master"   // serves slaves and operators; calls slaves
	RoleSlave    Role = "slave"    // serves the master; calls the master
	RoleOperator Role = "operator" // calls the master only (a client certificate)
)

var roles = []Role{RoleMaster, RoleSlave, RoleOperator}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	for _, r := range roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q (valid roles: master, slave, operator)", s)
}

// extKeyUsage: servers (master, slave) also act as clients; an operator
// certificate cannot serve.
func (r Role) extKeyUsage() []x509.ExtKeyUsage {
	if r == RoleOperator {
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
}

// Identity is who a certificate says its holder is.
type Identity struct {
	Name string
	Role Role
}

// String is "ROLE NAME", e.g. "operator alice".
func (id Identity) String() string { return string(id.Role) + " " + id.Name }

// IdentityFromCert reads the identity abs wrote into a certificate. It does
// not verify the certificate: callers pass a verified one.
func IdentityFromCert(cert *x509.Certificate) (Identity, error) {
	name := cert.Subject.CommonName
	var found []string
	for _, ou := range cert.Subject.OrganizationalUnit {
		if r, ok := strings.CutPrefix(ou, roleOUPrefix); ok {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return Identity{}, fmt.Errorf("certificate %q has no abs role (no subject OU %q): it was not issued by `abs certs issue`", name, roleOUPrefix+"ROLE")
	case 1:
	default:
		return Identity{}, fmt.Errorf("certificate %q has %d abs roles (%s); it must have one", name, len(found), strings.Join(found, ", "))
	}
	role, err := ParseRole(found[0])
	if err != nil {
		return Identity{}, fmt.Errorf("certificate %q: %w", name, err)
	}
	if !ValidName(name) {
		return Identity{}, fmt.Errorf("certificate %q: the name (subject CN) is not a valid abs name (%s)", name, nameRule)
	}
	return Identity{Name: name, Role: role}, nil
}

// InitCA creates a realm CA in dir (created with mode 0700 if missing): an
// ECDSA P-256 self-signed certificate valid for 10 years from now, written to
// ca.crt (0644), and its key, written to ca.key (0600). realm, if not empty,
// is named in the CA's subject. InitCA refuses a dir that already has a
// ca.crt or ca.key; that error matches fs.ErrExist.
//
// Each file appears whole or not at all (written aside, synced, linked into
// place). The key is linked first: after a crash in between, dir holds ca.key
// only and InitCA refuses it until the operator removes it.
func InitCA(dir string, realm string, now time.Time) error {
	cn := "abs realm CA"
	if realm != "" {
		if !ValidName(realm) {
			return fmt.Errorf("realm %q is not a valid name (%s)", realm, nameRule)
		}
		cn += " (" + realm + ")"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create CA directory: %w", err)
	}
	for _, f := range []string{CAKeyFile, CACertFile} {
		if exists(filepath.Join(dir, f)) {
			return refused(fmt.Sprintf("%s already holds a CA; refusing to overwrite", dir))
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"abs"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(caValidity, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // signs leaves only
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, CAKeyFile), keyPEM, 0o600, true); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, CACertFile), encodeCert(der), 0o644, true)
}

// Issue signs a certificate for node name with role, using the CA in caDir,
// and writes outDir/ca.crt (a copy of the CA's), outDir/node.crt (0644) and
// outDir/node.key (0600); outDir is created 0700 if missing and may be caDir.
//
// The certificate is ECDSA P-256, valid for 2 years from now (never beyond the
// CA), with CN = name and OU = "abs-role:"+role; master and slave certificates
// may serve and connect, operator certificates only connect. hosts become its
// DNS and IP subject alternative names; when empty: name (if it is a valid DNS
// name), "localhost", 127.0.0.1 and ::1. abs itself does not check host names
// (see ClientTLS), so these only serve other TLS tools.
//
// Issue refuses an outDir that already has a node.key (the error matches
// fs.ErrExist). The key is linked into place last, so after a crash an
// outDir without node.key can simply be issued into again.
func Issue(caDir string, role Role, name string, outDir string, hosts []string, now time.Time) error {
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	if !ValidName(name) {
		return fmt.Errorf("name %q is not a valid name (%s)", name, nameRule)
	}
	dnsNames, ips, err := sans(name, hosts)
	if err != nil {
		return err
	}
	caPEM, caCert, caKey, err := loadCA(caDir)
	if err != nil {
		return err
	}
	if now.Before(caCert.NotBefore) || now.After(caCert.NotAfter) {
		return fmt.Errorf("the CA in %s is valid from %s until %s, not at %s", caDir,
			stamp(caCert.NotBefore), stamp(caCert.NotAfter), stamp(now))
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return fmt.Errorf("create certificate directory: %w", err)
	}
	if exists(filepath.Join(outDir, KeyFile)) {
		return refused(fmt.Sprintf("%s already holds %s; refusing to overwrite (remove %s, %s and %s there to issue a new certificate)",
			outDir, KeyFile, KeyFile, CertFile, CACertFile))
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	notAfter := now.AddDate(leafValidity, 0, 0)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         name,
			OrganizationalUnit: []string{roleOUPrefix + string(role)},
			Organization:       []string{"abs"},
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           role.extKeyUsage(),
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("sign certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(outDir, CACertFile), caPEM, 0o644, false); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(outDir, CertFile), encodeCert(der), 0o644, false); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(outDir, KeyFile), keyPEM, 0o600, true); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return refused(fmt.Sprintf("%s already holds %s; refusing to overwrite", outDir, KeyFile))
		}
		return err
	}
	return nil
}

// loadCA reads a CA directory for Issue: the raw ca.crt (to copy), its
// first certificate and the matching key.
func loadCA(dir string) (raw []byte, cert *x509.Certificate, key crypto.Signer, err error) {
	hint := fmt.Sprintf("it is not a CA directory (make one with `abs certs init-ca --dir %s`)", dir)
	raw, certs, err := readCerts(dir, CACertFile, hint)
	if err != nil {
		return nil, nil, nil, err
	}
	cert = certs[0]
	if !cert.IsCA {
		return nil, nil, nil, fmt.Errorf("%s in %s is not a CA certificate (%q)", CACertFile, dir, cert.Subject.CommonName)
	}
	key, err = readKey(dir, CAKeyFile, hint)
	if err != nil {
		return nil, nil, nil, err
	}
	if !publicKeyEqual(key, cert) {
		return nil, nil, nil, fmt.Errorf("%s in %s does not match %s (it is the key of another CA)", CAKeyFile, dir, CACertFile)
	}
	return raw, cert, key, nil
}

// Credentials are a node's TLS identity, as loaded from its certs directory.
type Credentials struct {
	Identity Identity
	CA       *x509.CertPool    // every certificate of ca.crt
	Cert     tls.Certificate   // node.crt with node.key
	Leaf     *x509.Certificate // node.crt
	CACert   *x509.Certificate // the first certificate of ca.crt
	Dir      string            // where they were loaded from, for messages
}

// LoadCredentials loads and checks dir/ca.crt, dir/node.crt and dir/node.key:
// the files exist and parse, the key matches the certificate, the
// certificate is signed by the CA, valid now and carries an abs identity.
// Every error says what is wrong and, for a missing file, how to make one;
// missing files match fs.ErrNotExist.
//
// ca.crt may hold more than one certificate (to roll a CA over); all of them
// are trusted.
func LoadCredentials(dir string) (*Credentials, error) {
	issue := fmt.Sprintf("issue one with `abs certs issue --ca CA_DIR --role ROLE --name NAME --dir %s`", dir)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &msgError{fmt.Sprintf("no certificate directory %s: %s", dir, issue), err}
	case err != nil:
		return nil, fmt.Errorf("certificate directory: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("certificate directory %s is not a directory", dir)
	}
	_, cas, err := readCerts(dir, CACertFile, "copy the realm's ca.crt there, or "+issue)
	if err != nil {
		return nil, err
	}
	_, leaves, err := readCerts(dir, CertFile, issue)
	if err != nil {
		return nil, err
	}
	leaf := leaves[0]
	key, err := readKey(dir, KeyFile, "the key is written with node.crt; "+issue)
	if err != nil {
		return nil, err
	}
	if !publicKeyEqual(key, leaf) {
		return nil, fmt.Errorf("%s in %s does not match %s (it is the key of another certificate)", KeyFile, dir, CertFile)
	}
	id, err := IdentityFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", CertFile, dir, err)
	}
	now := time.Now()
	if err := checkDates(leaf, now); err != nil {
		return nil, fmt.Errorf("%s in %s (%s): %w", CertFile, dir, id, err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		var unknown x509.UnknownAuthorityError
		if errors.As(err, &unknown) {
			return nil, fmt.Errorf("%s in %s (%s) is not signed by the CA in its %s (%q): it comes from another CA",
				CertFile, dir, id, CACertFile, cas[0].Subject.CommonName)
		}
		// The CA itself may have expired, or the chain may be invalid.
		if err := checkDates(cas[0], now); err != nil {
			return nil, fmt.Errorf("%s in %s: %w", CACertFile, dir, err)
		}
		return nil, fmt.Errorf("%s in %s (%s) does not verify against %s: %w", CertFile, dir, id, CACertFile, err)
	}
	return &Credentials{
		Identity: id,
		CA:       pool,
		Cert:     tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf},
		Leaf:     leaf,
		CACert:   cas[0],
		Dir:      dir,
	}, nil
}

// Require returns an error unless the credentials are for role.
func (c *Credentials) Require(role Role) error {
	if c.Identity.Role == role {
		return nil
	}
	return fmt.Errorf("certificates in %s are for role %s (name %s); this command needs %s certificate",
		c.Dir, c.Identity.Role, c.Identity.Name, article(role))
}

// article prefixes a role with "a" or "an".
func article(r Role) string {
	if strings.ContainsRune("aeiou", rune(r[0])) {
		return "an " + string(r)
	}
	return "a " + string(r)
}

func checkDates(cert *x509.Certificate, now time.Time) error {
	switch {
	case now.After(cert.NotAfter):
		return fmt.Errorf("expired on %s (valid from %s until %s; it is now %s)",
			stamp(cert.NotAfter), stamp(cert.NotBefore), stamp(cert.NotAfter), stamp(now))
	case now.Before(cert.NotBefore):
		return fmt.Errorf("not valid yet (valid from %s until %s; it is now %s: check the clock)",
			stamp(cert.NotBefore), stamp(cert.NotAfter), stamp(now))
	}
	return nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// readCerts reads the PEM certificates of dir/file; hint says how to get the
// file when it is missing.
func readCerts(dir, file, hint string) ([]byte, []*x509.Certificate, error) {
	raw, err := readFile(dir, file, hint)
	if err != nil {
		return nil, nil, err
	}
	var certs []*x509.Certificate
	rest := raw
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, nil, fmt.Errorf("%s in %s: unexpected PEM block %q (want CERTIFICATE)", file, dir, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("%s in %s: %w", file, dir, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, nil, fmt.Errorf("%s in %s holds no PEM certificate", file, dir)
	}
	return raw, certs, nil
}

// readKey reads a PEM private key (PKCS #8, or SEC 1 "EC PRIVATE KEY").
func readKey(dir, file, hint string) (crypto.Signer, error) {
	raw, err := readFile(dir, file, hint)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, fmt.Errorf("%s in %s holds no PEM private key", file, dir)
	}
	var key any
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("%s in %s: unexpected PEM block %q (want PRIVATE KEY)", file, dir, b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", file, dir, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s in %s: unsupported key type %T", file, dir, key)
	}
	return signer, nil
}

func readFile(dir, file, hint string) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(dir, file))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &msgError{fmt.Sprintf("no %s in %s: %s", file, dir, hint), err}
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return raw, nil
}

func publicKeyEqual(key crypto.Signer, cert *x509.Certificate) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

var dnsNameRE = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`)

// sans splits hosts into DNS names and IP addresses, or gives the defaults.
func sans(name string, hosts []string) (dns []string, ips []net.IP, err error) {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
		if dnsNameRE.MatchString(name) && len(name) <= 253 {
			hosts = append([]string{name}, hosts...)
		}
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if dnsNameRE.MatchString(h) && len(h) <= 253 {
			dns = append(dns, h)
		} else {
			return nil, nil, fmt.Errorf("host %q is neither an IP address nor a DNS name", h)
		}
	}
	return dns, ips, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil // positive, never 0
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// writeFile makes path hold data with mode (exactly, whatever the umask): it
// writes a temporary file beside it, syncs it and then links it into place
// when exclusive (failing with fs.ErrExist if path exists) or renames it over
// path otherwise, and syncs the directory. Readers never see a partial file.
func writeFile(path string, data []byte, mode fs.FileMode, exclusive bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if exclusive {
		if err := os.Link(tmp, path); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		os.Remove(tmp)
	} else if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// msgError is an error with its own message that still matches the error it
// was caused by (errors.Is(err, fs.ErrNotExist), …).
type msgError struct {
	msg string
	err error
}

func (e *msgError) Error() string { return e.msg }
func (e *msgError) Unwrap() error { return e.err }

// refused is a refusal to overwrite: nothing was written; matches fs.ErrExist.
func refused(msg string) error { return &msgError{msg, fs.ErrExist} }
