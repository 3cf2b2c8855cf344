package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Config is one node's configuration file.
//
// The file has two sections that every node understands:
//
//	cluster:                 # identical on every node of the realm (see Cluster.Hash)
//	  realm: athena
//	  master: 127.0.0.1:7400
//	  slaves: [tape1, tape2] # optional: the slaves this realm's master accepts
//	  standbys: []           # optional, reserved
//	node:                    # this node only
//	  name: green-acres
//	  data: /var/lib/abs/master
//	  listen: 127.0.0.1:7400
//	  metrics: 127.0.0.1:7480  # optional; empty = no metrics endpoint
//	  certs: /etc/abs/green-acres   # dir with ca.crt, node.crt, node.key
//
// Relative node.data and node.certs paths are resolved against the directory of
// the config file (for Parse: the directory part of name), so a config means the
// same thing whatever the working directory of the process that reads it.
//
// Node-local sections owned by other packages (a slave's library:, servers:) are
// top-level keys too. Parse refuses any top-level key it was not told about; the
// caller names the ones it owns in extraSections and decodes them from Extra with
// Config.DecodeSection or DecodeStrict.
type Config struct {
	Cluster Cluster
	Node    Node
	// Path is the file the config came from (the name given to Parse).
	Path string
	// Extra holds the value node of each top-level key that was named in
	// extraSections and present in the file. Keys absent from the file are
	// absent from the map; the map is never nil.
	Extra map[string]*yaml.Node
}

// Cluster is the realm-wide section: it must be identical on every node, which
// Hash lets nodes check on every call.
type Cluster struct {
	Realm    string
	Master   string   // host:port of the master
	Slaves   []string // names of the slaves the master accepts; empty = not restricted here
	Standbys []string // reserved for standby masters (§8 of DESIGN.md)
}

// Node is the section that describes this node only.
type Node struct {
	Name    string
	Data    string // data directory (absolute, or resolved against the config file's directory)
	Listen  string // host:port to serve on; port 0 picks a free port (tests)
	Metrics string // host:port of the /metrics endpoint; empty = none
	Certs   string // directory holding ca.crt, node.crt and node.key
}

var (
	clusterKeys = []string{"realm", "master", "slaves", "standbys"}
	nodeKeys    = []string{"name", "data", "listen", "metrics", "certs"}
)

// nameRE is what a realm, node or slave name may look like: something that is
// safe as a file name, a label in a certificate and a word in a log line.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

const nameRule = "lower-case letters, digits, '.', '_' and '-', at most 63, starting with a letter or digit"

// ValidName reports whether s may be used as a realm, node or slave name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Load reads and validates the config file at path. It is LoadWith with no
// extra sections.
func Load(path string) (*Config, error) { return LoadWith(path) }

// LoadWith reads and validates the config file at path, keeping the top-level
// sections named in extraSections in Config.Extra (see Parse).
func LoadWith(path string, extraSections ...string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, extraSections...)
}

// Parse decodes and validates a config file. name is the file's path: it
// starts every message and is the base for relative data and certs paths.
//
// Top-level keys other than cluster and node are errors unless listed in
// extraSections; those are kept undecoded in Config.Extra. Listing "cluster"
// or "node" there changes nothing.
//
// Every problem found is reported, not only the first: the error is an
// errors.Join of *ConfigError values sorted by line, each printed as
// "name:line: message" (or "name: message" for a value that is missing).
func Parse(name string, data []byte, extraSections ...string) (*Config, error) {
	p := &problems{file: name}
	root := p.document(data)
	if root == nil {
		return nil, p.err()
	}
	cfg := &Config{Path: name, Extra: map[string]*yaml.Node{}}

	known := []string{"cluster", "node"}
	for _, s := range extraSections {
		if !slices.Contains(known, s) {
			known = append(known, s)
		}
	}
	top := p.mapping(root, "", known)
	if top == nil {
		return nil, p.err()
	}
	for key, v := range top {
		if key != "cluster" && key != "node" {
			cfg.Extra[key] = v
		}
	}

	base := filepath.Dir(name)
	if n, ok := top["cluster"]; ok {
		cfg.Cluster = p.cluster(n)
	} else {
		p.add(0, "cluster section is required (realm, master, slaves, standbys)")
	}
	if n, ok := top["node"]; ok {
		cfg.Node = p.node(n, base)
	} else {
		p.add(0, "node section is required (name, data, listen, metrics, certs)")
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Resolve makes a path from the file absolute the way node.data and
// node.certs are: relative paths are relative to the config file's directory.
// Extra sections (a slave's library, its partitions) use it too.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.Path), p)
}

// Hash is the canonical hash of the cluster section: the first 16 hex digits of
// the SHA-256 of the canonical encoding below. Every node computes it from its
// own file and every call carries it, so two nodes whose cluster sections
// differ in any value refuse to work together, while comments, key order,
// quoting and whitespace (all gone after parsing) do not matter.
//
// The canonical encoding, version 1, is the line "abs-cluster-v1", then each
// field in the fixed order realm, master, slaves, standbys. A string field is
// written "NAME=LEN:VALUE\n", a list "NAME#COUNT\n" followed by "LEN:ITEM\n" per
// item in the order given. Strings are trimmed of surrounding white space and
// LEN is the decimal byte length of the trimmed value, so no value can be
// confused with the framing around it. An absent and an empty list encode the
// same. Changing this encoding changes every realm's hash: bump the version.
func (c Cluster) Hash() string {
	sum := sha256.Sum256(c.canonical())
	return hex.EncodeToString(sum[:])[:16]
}

func (c Cluster) canonical() []byte {
	var b bytes.Buffer
	b.WriteString("abs-cluster-v1\n")
	str := func(name, v string) {
		v = strings.TrimSpace(v)
		fmt.Fprintf(&b, "%s=%d:%s\n", name, len(v), v)
	}
	list := func(name string, vs []string) {
		fmt.Fprintf(&b, "%s#%d\n", name, len(vs))
		for _, v := range vs {
			v = strings.TrimSpace(v)
			fmt.Fprintf(&b, "%d:%s\n", len(v), v)
		}
	}
	str("realm", c.Realm)
	str("master", c.Master)
	list("slaves", c.Slaves)
	list("standbys", c.Standbys)
	return b.Bytes()
}

// ConfigError is one problem in a config file.
type ConfigError struct {
	File string
	Line int // 1-based; 0 when the problem has no single place (a missing value)
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// problems collects ConfigErrors for one file.
type problems struct {
	file string
	errs []*ConfigError
}

func (p *problems) add(line int, format string, args ...any) {
	p.errs = append(p.errs, &ConfigError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) at(n *yaml.Node, format string, args ...any) {
	p.add(n.Line, format, args...)
}

// err returns the problems sorted by line (missing values first) as one
// errors.Join error, or nil.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b *ConfigError) int { return a.Line - b.Line })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// yamlLineRE splits the yaml package's "yaml: line N: msg" errors.
var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// addYAML adds an error from the yaml package, moving its "line N:" (if any)
// in front, where every other message has it.
func (p *problems) addYAML(line int, prefix string, err string) {
	msg := strings.TrimPrefix(err, "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	p.add(line, "%s%s", prefix, msg)
}

// document parses data as exactly one YAML document and returns its root
// node, or nil after reporting why there is no usable one.
func (p *problems) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(0, "file is empty (expected cluster: and node: sections)")
		} else {
			p.addYAML(0, "YAML syntax error: ", err.Error())
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.addYAML(0, "YAML syntax error: ", err.Error())
		return nil
	default:
		p.at(&next, "a second YAML document (after ---) is not allowed: put everything in one document")
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			p.add(0, "file is empty (expected cluster: and node: sections)")
			return nil
		}
		root = root.Content[0]
	}
	root = deref(root)
	if isNull(root) {
		p.add(0, "file is empty (expected cluster: and node: sections)")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.at(root, "the file must be a mapping with cluster: and node: sections, not %s", kindName(root))
		return nil
	}
	return root
}

// mapping returns the values of mapping node n by key, after reporting
// duplicate keys, keys that are not plain names and keys not in known. where
// names the mapping in messages ("" for the top level). A null node (an empty
// section) is an empty mapping; any other non-mapping is reported and gives nil.
func (p *problems) mapping(n *yaml.Node, where string, known []string) map[string]*yaml.Node {
	m := map[string]*yaml.Node{}
	v := deref(n)
	if isNull(v) {
		return m
	}
	if v.Kind != yaml.MappingNode {
		p.at(n, "%s must be a mapping (key: value lines), not %s", where, kindName(v))
		return nil
	}
	in := "in " + where
	if where == "" {
		in = "at top level"
	}
	first := map[string]int{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := deref(v.Content[i]), v.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.at(v.Content[i], "keys must be plain names, not %s", kindName(k))
			continue
		}
		key := k.Value
		if line, dup := first[key]; dup {
			p.at(k, "duplicate key %q %s (first at line %d)", key, in, line)
			continue
		}
		first[key] = k.Line
		if !slices.Contains(known, key) {
			p.at(k, "unknown key %q %s (known: %s)", key, in, strings.Join(known, ", "))
			continue
		}
		m[key] = val
	}
	return m
}

func (p *problems) cluster(n *yaml.Node) Cluster {
	m := p.mapping(n, "cluster", clusterKeys)
	if m == nil {
		return Cluster{}
	}
	c := Cluster{
		Realm:  p.name(m, "cluster", "realm"),
		Master: p.hostPort(m, "cluster", "master", true),
	}
	c.Slaves = p.stringList(m["slaves"], "cluster.slaves", "names", func(item *yaml.Node, label, v string) {
		if !nameRE.MatchString(v) {
			p.at(item, "%s %q is not a valid name (%s)", label, v, nameRule)
		}
	})
	c.Standbys = p.stringList(m["standbys"], "cluster.standbys", "addresses", nil)
	return c
}

func (p *problems) node(n *yaml.Node, base string) Node {
	m := p.mapping(n, "node", nodeKeys)
	if m == nil {
		return Node{}
	}
	return Node{
		Name:    p.name(m, "node", "name"),
		Data:    p.path(m, "node", "data", base),
		Listen:  p.hostPort(m, "node", "listen", true),
		Metrics: p.hostPort(m, "node", "metrics", false),
		Certs:   p.path(m, "node", "certs", base),
	}
}

// scalar returns the trimmed value of the single value at m[key], "" when it
// is missing or null. ok is false when a problem has been reported (wrong type,
// or missing while required).
func (p *problems) scalar(m map[string]*yaml.Node, section, key string, required bool) (v string, at *yaml.Node, ok bool) {
	label := section + "." + key
	n, present := m[key]
	if !present {
		if required {
			p.add(0, "%s is required", label)
			return "", nil, false
		}
		return "", nil, true
	}
	d := deref(n)
	if d.Kind != yaml.ScalarNode {
		p.at(n, "%s must be a single value, not %s", label, kindName(d))
		return "", n, false
	}
	if !isNull(d) {
		v = strings.TrimSpace(d.Value)
	}
	if v == "" && required {
		p.at(n, "%s is required", label)
		return "", n, false
	}
	return v, n, true
}

func (p *problems) name(m map[string]*yaml.Node, section, key string) string {
	v, at, ok := p.scalar(m, section, key, true)
	if ok && !nameRE.MatchString(v) {
		p.at(at, "%s.%s %q is not a valid name (%s)", section, key, v, nameRule)
	}
	return v
}

func (p *problems) path(m map[string]*yaml.Node, section, key, base string) string {
	v, _, ok := p.scalar(m, section, key, true)
	if !ok {
		return v
	}
	if !filepath.IsAbs(v) {
		v = filepath.Join(base, v)
	}
	return v
}

// hostPort checks a host:port value with a numeric port. master is a dial
// address: it needs a host and a port from 1. listen and metrics are listen
// addresses: an empty host means every interface and port 0 a free port.
func (p *problems) hostPort(m map[string]*yaml.Node, section, key string, required bool) string {
	v, at, ok := p.scalar(m, section, key, required)
	if !ok || v == "" {
		return v
	}
	label := section + "." + key
	dial := key == "master"
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		p.at(at, "%s %q is not host:port", label, v)
		return v
	}
	n, err := strconv.ParseUint(port, 10, 16)
	switch {
	case err != nil:
		p.at(at, "%s %q: port %q is not a number from 0 to 65535", label, v, port)
	case n == 0 && dial:
		p.at(at, "%s %q: port 0 cannot be dialled", label, v)
	}
	switch {
	case host == "" && dial:
		p.at(at, "%s %q has no host", label, v)
	case host != "" && net.ParseIP(host) == nil && !hostRE.MatchString(host):
		p.at(at, "%s %q: %q is neither an IP address nor a host name", label, v, host)
	}
	return v
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?$`)

// stringList returns the items of the list at n (nil n or null: an empty list),
// reporting items that are not single values, empty items and duplicates, and
// calling check on each remaining item. what says what the items are, for
// the message about a value that is not a list.
func (p *problems) stringList(n *yaml.Node, label, what string, check func(item *yaml.Node, label, v string)) []string {
	if n == nil {
		return nil
	}
	d := deref(n)
	if isNull(d) {
		return nil
	}
	if d.Kind != yaml.SequenceNode {
		p.at(n, "%s must be a list of %s", label, what)
		return nil
	}
	var out []string
	first := map[string]int{}
	for i, item := range d.Content {
		il := fmt.Sprintf("%s[%d]", label, i)
		di := deref(item)
		if di.Kind != yaml.ScalarNode {
			p.at(item, "%s must be a single value, not %s", il, kindName(di))
			continue
		}
		v := ""
		if !isNull(di) {
			v = strings.TrimSpace(di.Value)
		}
		if v == "" {
			p.at(item, "%s is empty", il)
			continue
		}
		if line, dup := first[v]; dup {
			p.at(item, "%s lists %q twice (first at line %d)", label, v, line)
			continue
		}
		first[v] = item.Line
		if check != nil {
			check(item, il, v)
		}
		out = append(out, v)
	}
	return out
}

// deref follows an alias (*name) to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return "a single value"
	default:
		return "empty"
	}
}
