package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const goodConfig = `# the master of athena
cluster:
  realm: athena
  master: 127.0.0.1:7400
  slaves: [tape1, tape2]
  standbys: []
node:
  name: green-acres
  data: /var/lib/abs/master
  listen: 127.0.0.1:7400
  metrics: 127.0.0.1:7480
  certs: certs/green-acres
`

func TestParseGood(t *testing.T) {
	cfg, err := Parse(filepath.Join("etc", "abs", "master.yaml"), []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Cluster: Cluster{Realm: "athena", Master: "127.0.0.1:7400", Slaves: []string{"tape1", "tape2"}},
		Node: Node{
			Name:    "green-acres",
			Data:    "/var/lib/abs/master",
			Listen:  "127.0.0.1:7400",
			Metrics: "127.0.0.1:7480",
			// Relative paths are resolved against the config file's directory.
			Certs: filepath.Join("etc", "abs", "certs", "green-acres"),
		},
		Path:  filepath.Join("etc", "abs", "master.yaml"),
		Extra: map[string]*yaml.Node{},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestParseOptionalAndLenient(t *testing.T) {
	// Minimal config: no slaves, standbys or metrics; listen on port 0 and on
	// every interface; quoted values with spaces are trimmed.
	src := `
cluster: {realm: "athena ", master: "master.example.com:7400"}
node:
  name: tape1
  data: data
  listen: ":0"
  certs: /etc/abs/tape1
  metrics:
`
	cfg, err := Parse("slave.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.Realm != "athena" || cfg.Node.Listen != ":0" || cfg.Node.Metrics != "" || cfg.Node.Data != "data" {
		t.Errorf("got %+v", cfg)
	}
	if cfg.Cluster.Slaves != nil || cfg.Cluster.Standbys != nil {
		t.Errorf("lists: got %q %q, want nil", cfg.Cluster.Slaves, cfg.Cluster.Standbys)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.yaml")
	if err := os.WriteFile(path, []byte(goodConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != path || cfg.Node.Certs != filepath.Join(dir, "certs", "green-acres") {
		t.Errorf("Path %q Certs %q", cfg.Path, cfg.Node.Certs)
	}
	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// node is a valid node section, for cases about the cluster section.
const node = `node:
  name: n
  data: d
  listen: 127.0.0.1:0
  certs: c
`

// cluster is a valid cluster section, for cases about the node section.
const cluster = `cluster:
  realm: athena
  master: 127.0.0.1:7400
`

func TestParseBad(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"empty", "", []string{"master.yaml: file is empty (expected cluster: and node: sections)"}},
		{"only comments", "# nothing\n\n", []string{"master.yaml: file is empty (expected cluster: and node: sections)"}},
		{"only a document marker", "---\n", []string{"master.yaml: file is empty (expected cluster: and node: sections)"}},
		{"a list", "- cluster\n- node\n", []string{"master.yaml:1: the file must be a mapping with cluster: and node: sections, not a list"}},
		{"a scalar", "hello\n", []string{"master.yaml:1: the file must be a mapping with cluster: and node: sections, not a single value"}},
		{"syntax", "cluster:\n  realm: athena\n master: x\n", []string{"master.yaml:2: YAML syntax error: did not find expected key"}},
		{"syntax tab", "cluster:\n\trealm: athena\n", []string{"master.yaml:2: YAML syntax error: found character that cannot start any token"}},
		{"two documents", cluster + node + "---\nnode: {}\n", []string{"master.yaml:9: a second YAML document (after ---) is not allowed: put everything in one document"}},
		{"unknown key in node", cluster + `node:
  name: n
  data: d
  listen: 127.0.0.1:0
  listn: 127.0.0.1:7400
  certs: c
`, []string{`master.yaml:8: unknown key "listn" in node (known: name, data, listen, metrics, certs)`}},
		{"unknown top-level key", cluster + node + "library:\n  drives: 2\n", []string{
			`master.yaml:9: unknown key "library" at top level (known: cluster, node)`}},
		{"missing sections", "{}\n", []string{
			"master.yaml: cluster section is required (realm, master, slaves, standbys)",
			"master.yaml: node section is required (name, data, listen, metrics, certs)"}},
		{"missing values", "cluster:\n  realm: athena\nnode:\n  listen: 127.0.0.1:1\n", []string{
			"master.yaml: cluster.master is required",
			"master.yaml: node.name is required",
			"master.yaml: node.data is required",
			"master.yaml: node.certs is required"}},
		{"empty sections", "cluster:\nnode:\n", []string{
			"master.yaml: cluster.realm is required",
			"master.yaml: cluster.master is required",
			"master.yaml: node.name is required",
			"master.yaml: node.data is required",
			"master.yaml: node.listen is required",
			"master.yaml: node.certs is required"}},
		{"empty values", "cluster:\n  realm: ''\n  master:\n" + node, []string{
			"master.yaml:2: cluster.realm is required",
			"master.yaml:3: cluster.master is required"}},
		{"slaves not a list", "cluster:\n  realm: athena\n  slaves: tape1\n  master: 127.0.0.1:7400\n" + node, []string{
			"master.yaml:3: cluster.slaves must be a list of names"}},
		{"slaves bad entries", `cluster:
  realm: athena
  master: 127.0.0.1:7400
  slaves:
    - tape1
    - Tape 2
    - {name: tape3}
    - tape1
    - ""
` + node, []string{
			`master.yaml:6: cluster.slaves[1] "Tape 2" is not a valid name (lower-case letters, digits, '.', '_' and '-', at most 63, starting with a letter or digit)`,
			`master.yaml:7: cluster.slaves[2] must be a single value, not a mapping`,
			`master.yaml:8: cluster.slaves lists "tape1" twice (first at line 5)`,
			`master.yaml:9: cluster.slaves[4] is empty`}},
		{"standbys not a list", cluster + "  standbys: {a: b}\n" + node, []string{
			"master.yaml:4: cluster.standbys must be a list of addresses"}},
		{"master not host:port", "cluster:\n  realm: athena\n  master: localhost\n" + node, []string{
			`master.yaml:3: cluster.master "localhost" is not host:port`}},
		{"master port", "cluster:\n  realm: athena\n  master: localhost:http\n" + node, []string{
			`master.yaml:3: cluster.master "localhost:http": port "http" is not a number from 0 to 65535`}},
		{"master port 0", "cluster:\n  realm: athena\n  master: 'localhost:0'\n" + node, []string{
			`master.yaml:3: cluster.master "localhost:0": port 0 cannot be dialled`}},
		{"master port too big", "cluster:\n  realm: athena\n  master: 10.0.0.1:65536\n" + node, []string{
			`master.yaml:3: cluster.master "10.0.0.1:65536": port "65536" is not a number from 0 to 65535`}},
		{"master no host", "cluster:\n  realm: athena\n  master: :7400\n" + node, []string{
			`master.yaml:3: cluster.master ":7400" has no host`}},
		{"master bad host", "cluster:\n  realm: athena\n  master: 'a b:7400'\n" + node, []string{
			`master.yaml:3: cluster.master "a b:7400": "a b" is neither an IP address nor a host name`}},
		{"realm a list", "cluster:\n  realm: [a, b]\n  master: 127.0.0.1:7400\n" + node, []string{
			"master.yaml:2: cluster.realm must be a single value, not a list"}},
		{"bad names", "cluster:\n  realm: Athena\n  master: 127.0.0.1:7400\nnode:\n  name: -x\n  data: d\n  listen: 127.0.0.1:0\n  certs: c\n", []string{
			`master.yaml:2: cluster.realm "Athena" is not a valid name (lower-case letters, digits, '.', '_' and '-', at most 63, starting with a letter or digit)`,
			`master.yaml:5: node.name "-x" is not a valid name (lower-case letters, digits, '.', '_' and '-', at most 63, starting with a letter or digit)`}},
		{"name too long", cluster + "node:\n  name: " + strings.Repeat("a", 64) + "\n  data: d\n  listen: 127.0.0.1:0\n  certs: c\n", []string{
			`master.yaml:5: node.name "` + strings.Repeat("a", 64) + `" is not a valid name (lower-case letters, digits, '.', '_' and '-', at most 63, starting with a letter or digit)`}},
		{"listen and metrics", cluster + "node:\n  name: n\n  data: d\n  listen: 7400\n  metrics: x:y\n  certs: c\n", []string{
			`master.yaml:7: node.listen "7400" is not host:port`,
			`master.yaml:8: node.metrics "x:y": port "y" is not a number from 0 to 65535`}},
		{"node a list", cluster + "node:\n  - name: n\n", []string{
			"master.yaml:5: node must be a mapping (key: value lines), not a list"}},
		{"duplicate keys", cluster + node + "node:\n  name: m\ncluster: {}\n", []string{
			`master.yaml:9: duplicate key "node" at top level (first at line 4)`,
			`master.yaml:11: duplicate key "cluster" at top level (first at line 1)`}},
		{"duplicate key in section", "cluster:\n  realm: athena\n  realm: other\n  master: 127.0.0.1:1\n" + node, []string{
			`master.yaml:3: duplicate key "realm" in cluster (first at line 2)`}},
		{"key not a name", cluster + node + "? [a, b]\n: c\n", []string{
			"master.yaml:9: keys must be plain names, not a list"}},
		{"merge keys are not supported", cluster + node[:len("node:\n")] + "  <<: {name: n}\n" + node[len("node:\n"):], []string{
			`master.yaml:5: unknown key "<<" in node (known: name, data, listen, metrics, certs)`}},
		{"all errors, sorted by line", `cluster:
  realm: athena
  master: localhost
  slaves: tape1
node:
  name: n
  data: d
  listn: 127.0.0.1:7400
  certs: c
`, []string{
			"master.yaml: node.listen is required",
			`master.yaml:3: cluster.master "localhost" is not host:port`,
			"master.yaml:4: cluster.slaves must be a list of names",
			`master.yaml:8: unknown key "listn" in node (known: name, data, listen, metrics, certs)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("master.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("no error; got %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("config returned with an error: %+v", cfg)
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.File != "master.yaml" {
				t.Errorf("not a *ConfigError for master.yaml: %#v", err)
			}
		})
	}
}

func TestParseExtraSections(t *testing.T) {
	src := cluster + node + `library:
  path: /srv/tapes
  drives:
    - name: d0
      devcie: x
    - name: d1
servers:
  afs1: {partitions: [a, b]}
`
	cfg, err := Parse("slave.yaml", []byte(src), "library", "servers", "unused")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Extra) != 2 || cfg.Extra["library"] == nil || cfg.Extra["servers"] == nil {
		t.Fatalf("Extra = %v", cfg.Extra)
	}
	type drive struct {
		Name   string
		Device string `yaml:"device,omitempty"`
	}
	var lib struct {
		Path   string
		Drives []drive
	}
	err = cfg.DecodeSection("library", &lib)
	want := `slave.yaml:13: unknown key "devcie" in library.drives[0] (known: name, device)`
	if err == nil || err.Error() != want {
		t.Errorf("DecodeSection: got %v, want %s", err, want)
	}
	var servers map[string]struct{ Partitions []string }
	if err := cfg.DecodeSection("servers", &servers); err != nil {
		t.Fatal(err)
	}
	if got := servers["afs1"].Partitions; !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("servers: %v", servers)
	}
	// An absent section is not an error and leaves out alone.
	out := map[string]int{"kept": 1}
	if err := cfg.DecodeSection("unused", &out); err != nil || out["kept"] != 1 {
		t.Errorf("absent section: %v %v", err, out)
	}
}

func TestDecodeStrict(t *testing.T) {
	type base struct {
		Capacity int `yaml:"capacity"`
	}
	type library struct {
		base    `yaml:",inline"`
		Path    string            `yaml:"path"`
		Skipped string            `yaml:"-"`
		Labels  map[string]string `yaml:"labels"`
		Drives  []struct {
			Name string `yaml:"name"`
		} `yaml:"drives"`
		Any    any            `yaml:"any"`
		Extras map[string]int `yaml:",inline"`
	}
	type strict struct {
		Path  string `yaml:"path"`
		Count int    `yaml:"count"`
	}
	for _, tc := range []struct {
		name, src string
		out       func() any
		want      string
	}{
		{"good", "path: p\ncapacity: 3\nlabels: {a: b}\ndrives: [{name: d}]\nany: {whatever: 1}\nmore: 7\n",
			func() any { return new(library) }, ""},
		{"inline map takes the rest, typed", "path: p\nmore: seven\n",
			func() any { return new(library) }, "slave.yaml:2: cannot unmarshal !!str `seven` into int"},
		{"unknown and skipped keys", "path: p\ncount: 2\nskipped: x\nextra: 1\n",
			func() any { return new(strict) }, `slave.yaml:3: unknown key "skipped" (known: path, count)` + "\n" +
				`slave.yaml:4: unknown key "extra" (known: path, count)`},
		{"nested", "drives:\n  - name: a\n  - nmae: b\n",
			func() any { return new(library) }, `slave.yaml:3: unknown key "nmae" in drives[1] (known: name)`},
		{"type error", "path: p\ncount: many\n",
			func() any { return new(strict) }, "slave.yaml:2: cannot unmarshal !!str `many` into int"},
		{"duplicate", "path: p\ncount: 1\npath: q\n",
			func() any { return new(strict) }, `slave.yaml:3: duplicate key "path" (first at line 1)`},
		{"merge keys follow the type", "a: &a {path: p, bogus: 1}\nb:\n  <<: *a\n  count: 2\n",
			func() any { return new(map[string]strict) }, `slave.yaml:1: unknown key "bogus" in a (known: path, count)`},
		{"alias", "x: &x {count: 1, nope: 2}\ny: *x\nz: *x\n",
			func() any { return new(map[string]strict) }, `slave.yaml:1: unknown key "nope" in x (known: path, count)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(tc.src), &doc); err != nil {
				t.Fatal(err)
			}
			err := DecodeStrict(doc.Content[0], "slave.yaml", tc.out())
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
	if err := DecodeStrict(&yaml.Node{}, "x.yaml", strict{}); err == nil {
		t.Error("a non-pointer out was accepted")
	}
}

func TestHashStable(t *testing.T) {
	a := `# one way
cluster:
  realm: athena
  master: 127.0.0.1:7400
  slaves: [tape1, tape2]
node: {name: a, data: d, listen: "127.0.0.1:1", certs: c}
`
	b := `node:
  name: b           # another node of the same realm
  data: /elsewhere
  listen: 10.0.0.2:7401
  certs: c
cluster:
  slaves:
    - "tape1"
    - 'tape2'
  master:   "127.0.0.1:7400"
  standbys: []
  realm: athena
`
	ha, hb := mustParse(t, a).Cluster.Hash(), mustParse(t, b).Cluster.Hash()
	if ha != hb {
		t.Errorf("same cluster section, different hashes: %s %s", ha, hb)
	}
	if len(ha) != 16 || strings.Trim(ha, "0123456789abcdef") != "" {
		t.Errorf("hash %q is not 16 lower-case hex digits", ha)
	}
	// Pinned: every node of every realm computes this; a change here breaks
	// mixed-version realms and needs a new encoding version.
	if want := "576746c3f32c689a"; ha != want {
		t.Errorf("hash of the reference section = %s, want %s (canonical encoding changed?)\n%s", ha, want, mustParse(t, a).Cluster.canonical())
	}

	base := Cluster{Realm: "athena", Master: "127.0.0.1:7400", Slaves: []string{"tape1", "tape2"}}
	if h := (Cluster{Realm: " athena\t", Master: "127.0.0.1:7400 ", Slaves: []string{"tape1", " tape2"}, Standbys: []string{}}).Hash(); h != base.Hash() {
		t.Errorf("trimming or nil/empty lists change the hash")
	}
	for name, c := range map[string]Cluster{
		"realm":          {Realm: "athena2", Master: base.Master, Slaves: base.Slaves},
		"master":         {Realm: base.Realm, Master: "127.0.0.1:7401", Slaves: base.Slaves},
		"slave order":    {Realm: base.Realm, Master: base.Master, Slaves: []string{"tape2", "tape1"}},
		"slave removed":  {Realm: base.Realm, Master: base.Master, Slaves: []string{"tape1"}},
		"slaves joined":  {Realm: base.Realm, Master: base.Master, Slaves: []string{"tape1tape2"}},
		"slave moved":    {Realm: base.Realm, Master: base.Master, Slaves: []string{"tape1"}, Standbys: []string{"tape2"}},
		"standby added":  {Realm: base.Realm, Master: base.Master, Slaves: base.Slaves, Standbys: []string{"x:1"}},
		"field shifting": {Realm: "athena\nmaster=14:127.0.0.1:7400", Slaves: base.Slaves},
	} {
		if c.Hash() == base.Hash() {
			t.Errorf("%s: hash unchanged", name)
		}
	}
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		goodConfig, "", "- a", "cluster:\nnode:\n", cluster + node, cluster + node + "library: {a: b}\n",
		"a: &a [*a]", "cluster: &c {realm: x}\nnode: *c\n", "{? [a]: b}", "cluster: {slaves: [*x]}",
		"cluster:\n  realm: athena\n  <<: {master: 'a:1'}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, "library")
		if err != nil {
			if cfg != nil {
				t.Fatal("config and error")
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		_ = cfg.Cluster.Hash()
		if n := cfg.Extra["library"]; n != nil {
			var v map[string]any
			_ = cfg.DecodeSection("library", &v)
		}
	})
}
