package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// testRealm is a CA with certificates for a master, two slaves and an
// operator, plus a second CA ("evil") with certificates of its own.
type testRealm struct {
	ca, evilCA string
	dirs       map[string]string // certs directory by node name
}

func newRealm(t *testing.T) *testRealm {
	t.Helper()
	root := t.TempDir()
	now := time.Now()
	r := &testRealm{
		ca:     filepath.Join(root, "ca"),
		evilCA: filepath.Join(root, "evil-ca"),
		dirs:   map[string]string{},
	}
	must(t, InitCA(r.ca, "athena", now))
	must(t, InitCA(r.evilCA, "evil", now))
	for _, n := range []struct {
		ca   string
		role Role
		name string
	}{
		{r.ca, RoleMaster, "green-acres"},
		{r.ca, RoleSlave, "tape1"},
		{r.ca, RoleSlave, "tape2"},
		{r.ca, RoleOperator, "alice"},
		{r.evilCA, RoleOperator, "mallory"},
		{r.evilCA, RoleMaster, "fake-master"},
	} {
		r.dirs[n.name] = filepath.Join(root, n.name)
		must(t, Issue(n.ca, n.role, n.name, r.dirs[n.name], nil, now))
	}
	return r
}

func (r *testRealm) creds(t *testing.T, name string) *Credentials {
	t.Helper()
	c, err := LoadCredentials(r.dirs[name])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	_, certs, err := readCerts(filepath.Dir(path), filepath.Base(path), "")
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	must(t, err)
	must(t, os.WriteFile(dst, data, 0o600))
}

func TestParseRole(t *testing.T) {
	for _, r := range []Role{RoleMaster, RoleSlave, RoleOperator} {
		if got, err := ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	_, err := ParseRole("admin")
	if want := `unknown role "admin" (valid roles: master, slave, operator)`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestInitCA(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	dir := filepath.Join(t.TempDir(), "a", "ca")
	must(t, InitCA(dir, "athena", now))
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("dir mode %o", m)
	}
	if m := mode(t, filepath.Join(dir, CAKeyFile)); m != 0o600 {
		t.Errorf("ca.key mode %o", m)
	}
	if m := mode(t, filepath.Join(dir, CACertFile)); m != 0o644 {
		t.Errorf("ca.crt mode %o", m)
	}
	ca := readCert(t, filepath.Join(dir, CACertFile))
	if ca.Subject.CommonName != "abs realm CA (athena)" || !ca.IsCA || !ca.NotAfter.Equal(now.AddDate(10, 0, 0)) ||
		ca.PublicKeyAlgorithm != x509.ECDSA || ca.CheckSignatureFrom(ca) != nil {
		t.Errorf("CA certificate: CN %q IsCA %v NotAfter %v", ca.Subject.CommonName, ca.IsCA, ca.NotAfter)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("dir holds %d entries, want ca.crt and ca.key only", len(entries))
	}
	key, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))

	err := InitCA(dir, "athena", now)
	if want := dir + " already holds a CA; refusing to overwrite"; err == nil || err.Error() != want || !errors.Is(err, fs.ErrExist) {
		t.Errorf("second InitCA: got %v, want %s", err, want)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, CAKeyFile)); !bytes.Equal(key, again) {
		t.Error("ca.key changed")
	}
	// A CA half there (a crash between the two files) is refused too.
	must(t, os.Remove(filepath.Join(dir, CACertFile)))
	if err := InitCA(dir, "", now); !errors.Is(err, fs.ErrExist) {
		t.Errorf("InitCA over a lone ca.key: %v", err)
	}

	dir2 := t.TempDir()
	must(t, InitCA(dir2, "", now))
	if cn := readCert(t, filepath.Join(dir2, CACertFile)).Subject.CommonName; cn != "abs realm CA" {
		t.Errorf("CN without realm: %q", cn)
	}
	if err := InitCA(t.TempDir(), "Athena", now); err == nil {
		t.Error("bad realm accepted")
	}
}

func TestIssue(t *testing.T) {
	now := time.Now()
	root := t.TempDir()
	caDir := filepath.Join(root, "ca")
	must(t, InitCA(caDir, "athena", now))
	caPEM, _ := os.ReadFile(filepath.Join(caDir, CACertFile))

	for _, tc := range []struct {
		role    Role
		name    string
		hosts   []string
		usage   []x509.ExtKeyUsage
		dns     []string
		ips     []string
		outside bool
	}{
		{RoleMaster, "green-acres", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			[]string{"green-acres", "localhost"}, []string{"127.0.0.1", "::1"}, false},
		{RoleSlave, "tape_1", []string{"tape1.example.com", "10.0.0.5"}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			[]string{"tape1.example.com"}, []string{"10.0.0.5"}, false},
		// A name that is not a DNS name is left out of the default SANs.
		{RoleOperator, "alice_b", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			[]string{"localhost"}, []string{"127.0.0.1", "::1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(root, tc.name)
			must(t, Issue(caDir, tc.role, tc.name, out, tc.hosts, now))
			for f, want := range map[string]fs.FileMode{CACertFile: 0o644, CertFile: 0o644, KeyFile: 0o600, ".": 0o700} {
				if m := mode(t, filepath.Join(out, f)); m != want {
					t.Errorf("%s mode %o, want %o", f, m, want)
				}
			}
			if got, _ := os.ReadFile(filepath.Join(out, CACertFile)); !bytes.Equal(got, caPEM) {
				t.Error("ca.crt is not a copy of the CA's")
			}
			leaf := readCert(t, filepath.Join(out, CertFile))
			if leaf.Subject.CommonName != tc.name || !slices.Equal(leaf.Subject.OrganizationalUnit, []string{"abs-role:" + string(tc.role)}) {
				t.Errorf("subject %v", leaf.Subject)
			}
			if !slices.Equal(leaf.ExtKeyUsage, tc.usage) || leaf.IsCA || leaf.PublicKeyAlgorithm != x509.ECDSA {
				t.Errorf("usage %v IsCA %v", leaf.ExtKeyUsage, leaf.IsCA)
			}
			var ips []string
			for _, ip := range leaf.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(leaf.DNSNames, tc.dns) || !slices.Equal(ips, tc.ips) {
				t.Errorf("SANs %v %v, want %v %v", leaf.DNSNames, ips, tc.dns, tc.ips)
			}
			if !leaf.NotAfter.Equal(now.AddDate(2, 0, 0).Truncate(time.Second)) {
				t.Errorf("NotAfter %v", leaf.NotAfter)
			}
			c, err := LoadCredentials(out)
			if err != nil {
				t.Fatal(err)
			}
			if c.Identity != (Identity{tc.name, tc.role}) || c.Dir != out {
				t.Errorf("identity %v", c.Identity)
			}
		})
	}

	// Refusals write nothing.
	out := filepath.Join(root, "green-acres")
	crt, _ := os.ReadFile(filepath.Join(out, CertFile))
	err := Issue(caDir, RoleMaster, "green-acres", out, nil, now)
	if want := out + " already holds node.key; refusing to overwrite (remove node.key, node.crt and ca.crt there to issue a new certificate)"; err == nil || err.Error() != want || !errors.Is(err, fs.ErrExist) {
		t.Errorf("got %v, want %s", err, want)
	}
	if again, _ := os.ReadFile(filepath.Join(out, CertFile)); !bytes.Equal(crt, again) {
		t.Error("node.crt changed")
	}
	// Without its key (a crash before the key was linked) a dir is issued into again.
	must(t, os.Remove(filepath.Join(out, KeyFile)))
	must(t, Issue(caDir, RoleMaster, "green-acres", out, nil, now))
	if _, err := LoadCredentials(out); err != nil {
		t.Error(err)
	}

	for _, tc := range []struct {
		name  string
		issue func(out string) error
		want  string
	}{
		{"bad role", func(out string) error { return Issue(caDir, "admin", "x", out, nil, now) },
			`unknown role "admin" (valid roles: master, slave, operator)`},
		{"bad name", func(out string) error { return Issue(caDir, RoleSlave, "Tape 1", out, nil, now) },
			`name "Tape 1" is not a valid name (lower-case letters, digits, '.', '_' and '-', at most 63, starting with a letter or digit)`},
		{"bad host", func(out string) error { return Issue(caDir, RoleSlave, "x", out, []string{"tape1:7400"}, now) },
			`host "tape1:7400" is neither an IP address nor a DNS name`},
		{"no CA", func(out string) error { return Issue(filepath.Join(root, "nothing"), RoleSlave, "x", out, nil, now) },
			"no ca.crt in " + filepath.Join(root, "nothing") + ": it is not a CA directory (make one with `abs certs init-ca --dir " + filepath.Join(root, "nothing") + "`)"},
		{"CA expired", func(out string) error { return Issue(caDir, RoleSlave, "x", out, nil, now.AddDate(11, 0, 0)) },
			"the CA in " + caDir + " is valid from "},
	} {
		out := filepath.Join(root, "refused-"+strings.ReplaceAll(tc.name, " ", "-"))
		err := tc.issue(out)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %s", tc.name, err, tc.want)
		}
		if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %s was created", tc.name, out)
		}
	}

	// A certificate never outlives its CA.
	out = filepath.Join(root, "late")
	must(t, Issue(caDir, RoleSlave, "late", out, nil, now.AddDate(9, 0, 0)))
	ca := readCert(t, filepath.Join(caDir, CACertFile))
	if leaf := readCert(t, filepath.Join(out, CertFile)); !leaf.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("leaf NotAfter %v, CA NotAfter %v", leaf.NotAfter, ca.NotAfter)
	}
}

// signCustom writes into dir a certificate made from tmpl and signed by the CA
// in caDir, with its key and the CA certificate.
func signCustom(t *testing.T, caDir, dir string, tmpl *x509.Certificate) {
	t.Helper()
	caPEM, caCert, caKey, err := loadCA(caDir)
	must(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	must(t, err)
	keyPEM, err := encodeKey(key)
	must(t, err)
	must(t, os.MkdirAll(dir, 0o700))
	must(t, os.WriteFile(filepath.Join(dir, CACertFile), caPEM, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, CertFile), encodeCert(der), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, KeyFile), keyPEM, 0o600))
}

func TestLoadCredentialsErrors(t *testing.T) {
	r := newRealm(t)
	root := t.TempDir()
	alice := r.dirs["alice"]
	issueHint := func(dir string) string {
		return "issue one with `abs certs issue --ca CA_DIR --role ROLE --name NAME --dir " + dir + "`"
	}
	// files copies the named files of alice's directory into a new one.
	files := func(dir string, names ...string) {
		must(t, os.MkdirAll(dir, 0o700))
		for _, n := range names {
			copyFile(t, filepath.Join(alice, n), filepath.Join(dir, n))
		}
	}

	past := time.Now().AddDate(-3, 0, 0)
	oldCA := filepath.Join(root, "old-ca")
	must(t, InitCA(oldCA, "athena", past))
	must(t, Issue(oldCA, RoleOperator, "old", filepath.Join(root, "expired"), nil, past))
	expired := readCert(t, filepath.Join(root, "expired", CertFile))
	must(t, Issue(r.ca, RoleOperator, "young", filepath.Join(root, "future"), nil, time.Now().AddDate(1, 0, 0)))
	future := readCert(t, filepath.Join(root, "future", CertFile))

	for _, tc := range []struct {
		name     string
		setup    func(dir string)
		want     string // exact message, or its start when prefix is set
		prefix   bool
		notExist bool
	}{
		{"no directory", func(string) {},
			"no certificate directory %[1]s: " + issueHint("%[1]s"), false, true},
		{"not a directory", func(dir string) { must(t, os.WriteFile(dir, nil, 0o644)) },
			"certificate directory %s is not a directory", false, false},
		{"no ca.crt", func(dir string) { files(dir, CertFile, KeyFile) },
			"no ca.crt in %[1]s: copy the realm's ca.crt there, or " + issueHint("%[1]s"), false, true},
		{"no node.crt", func(dir string) { files(dir, CACertFile, KeyFile) },
			"no node.crt in %[1]s: " + issueHint("%[1]s"), false, true},
		{"no node.key", func(dir string) { files(dir, CACertFile, CertFile) },
			"no node.key in %[1]s: the key is written with node.crt; " + issueHint("%[1]s"), false, true},
		{"key of another cert", func(dir string) {
			files(dir, CACertFile, CertFile)
			copyFile(t, filepath.Join(r.dirs["tape1"], KeyFile), filepath.Join(dir, KeyFile))
		}, "node.key in %s does not match node.crt (it is the key of another certificate)", false, false},
		{"ca.crt of another CA", func(dir string) {
			files(dir, CertFile, KeyFile)
			copyFile(t, filepath.Join(r.evilCA, CACertFile), filepath.Join(dir, CACertFile))
		}, `node.crt in %s (operator alice) is not signed by the CA in its ca.crt ("abs realm CA (evil)"): it comes from another CA`, false, false},
		{"garbage ca.crt", func(dir string) {
			files(dir, CertFile, KeyFile)
			must(t, os.WriteFile(filepath.Join(dir, CACertFile), []byte("hello\n"), 0o644))
		}, "ca.crt in %s holds no PEM certificate", false, false},
		{"key is a certificate", func(dir string) {
			files(dir, CACertFile, CertFile)
			copyFile(t, filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
		}, `node.key in %s: unexpected PEM block "CERTIFICATE" (want PRIVATE KEY)`, false, false},
		{"expired", func(dir string) { must(t, os.Rename(filepath.Join(root, "expired"), dir)) },
			"node.crt in %s (operator old): expired on " + stamp(expired.NotAfter) + " (valid from " + stamp(expired.NotBefore) +
				" until " + stamp(expired.NotAfter) + "; it is now ", true, false},
		{"not yet valid", func(dir string) { must(t, os.Rename(filepath.Join(root, "future"), dir)) },
			"node.crt in %s (operator young): not valid yet (valid from " + stamp(future.NotBefore) + " until " + stamp(future.NotAfter) +
				"; it is now ", true, false},
		{"no role", func(dir string) {
			signCustom(t, r.ca, dir, &x509.Certificate{
				SerialNumber: bigOne(), Subject: pkix.Name{CommonName: "norole", OrganizationalUnit: []string{"ops"}},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			})
		}, `node.crt in %s: certificate "norole" has no abs role (no subject OU "abs-role:ROLE"): it was not issued by ` + "`abs certs issue`", false, false},
		{"two roles", func(dir string) {
			signCustom(t, r.ca, dir, &x509.Certificate{
				SerialNumber: bigOne(), Subject: pkix.Name{CommonName: "both", OrganizationalUnit: []string{"abs-role:slave", "abs-role:master"}},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			})
		}, `node.crt in %s: certificate "both" has 2 abs roles (slave, master); it must have one`, false, false},
		{"unknown role", func(dir string) {
			signCustom(t, r.ca, dir, &x509.Certificate{
				SerialNumber: bigOne(), Subject: pkix.Name{CommonName: "boss", OrganizationalUnit: []string{"abs-role:admin"}},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			})
		}, `node.crt in %s: certificate "boss": unknown role "admin" (valid roles: master, slave, operator)`, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(root, strings.ReplaceAll(tc.name, " ", "-")+"-dir")
			tc.setup(dir)
			c, err := LoadCredentials(dir)
			if err == nil {
				t.Fatalf("loaded %v", c.Identity)
			}
			want := strings.ReplaceAll(tc.want, "%s", dir)
			want = strings.ReplaceAll(want, "%[1]s", dir)
			if got := err.Error(); tc.prefix && !strings.HasPrefix(got, want) || !tc.prefix && got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
			if errors.Is(err, fs.ErrNotExist) != tc.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v", !tc.notExist)
			}
		})
	}
}

func TestRequire(t *testing.T) {
	r := newRealm(t)
	c := r.creds(t, "alice")
	must(t, c.Require(RoleOperator))
	err := c.Require(RoleMaster)
	want := "certificates in " + r.dirs["alice"] + " are for role operator (name alice); this command needs a master certificate"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestSANsDefault(t *testing.T) {
	dns, ips, err := sans("tape1.example.com", nil)
	must(t, err)
	if !reflect.DeepEqual(dns, []string{"tape1.example.com", "localhost"}) || len(ips) != 2 ||
		!ips[0].Equal(net.IPv4(127, 0, 0, 1)) || !ips[1].Equal(net.IPv6loopback) {
		t.Errorf("%v %v", dns, ips)
	}
}

func bigOne() *big.Int { return big.NewInt(1) }
