package cluster

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DecodeSection decodes the extra section key (see Parse) into out with
// DecodeStrict, naming the section in messages: `slave.yaml:12: unknown key
// "drvies" in library (known: drives, capacity)`. It returns nil and leaves out
// untouched when the file has no such section.
func (c *Config) DecodeSection(key string, out any) error {
	n, ok := c.Extra[key]
	if !ok {
		return nil
	}
	return decodeStrict(c.Path, key, n, out)
}

// DecodeStrict decodes n into out (a non-nil pointer) as yaml.Node.Decode does,
// and also refuses mapping keys that out's type has no field for, and duplicate
// keys, the way Parse does. name is the file name that starts each message;
// keys are placed by their path below n ("unknown key "x" in drives[0]").
// Every problem is reported, sorted by line, as an errors.Join of
// *ConfigError.
//
// Keys are checked wherever the Go type says what is allowed: struct fields
// (with the yaml package's tag rules, including ",inline"), map values, list
// items. Below an interface (any), a yaml.Node or a type with its own
// UnmarshalYAML, every key is accepted.
func DecodeStrict(n *yaml.Node, name string, out any) error {
	return decodeStrict(name, "", n, out)
}

func decodeStrict(file, where string, n *yaml.Node, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("cluster: decode %s: need a non-nil pointer, got %T", file, out)
	}
	if n == nil {
		return nil
	}
	p := &problems{file: file}
	c := keyChecker{p: p, seen: map[checked]bool{}, dupLines: map[int]bool{}}
	c.check(n, rv.Type().Elem(), where)

	if err := n.Decode(out); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			p.addYAML(n.Line, "", err.Error())
			return p.err()
		}
		for _, msg := range te.Errors {
			// The yaml package reports duplicate keys too; keep our message.
			if m := yamlLineRE.FindStringSubmatch(msg); m != nil && strings.Contains(m[2], "already defined") && c.dupAt(m[1]) {
				continue
			}
			p.addYAML(n.Line, "", msg)
		}
	}
	return p.err()
}

type checked struct {
	n *yaml.Node
	t reflect.Type
}

// keyChecker walks a node tree alongside a Go type and reports the mapping
// keys the type does not know. Each (node, type) pair is visited once, so
// aliases cannot make the walk grow beyond the size of the document times
// the number of types.
type keyChecker struct {
	p        *problems
	seen     map[checked]bool
	dupLines map[int]bool
}

func (c *keyChecker) dupAt(line string) bool {
	l, _ := strconv.Atoi(line)
	return c.dupLines[l]
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	nodeType        = reflect.TypeFor[yaml.Node]()
)

func (c *keyChecker) check(n *yaml.Node, t reflect.Type, where string) {
	n = deref(n)
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) != 1 {
			return
		}
		n = deref(n.Content[0])
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if c.seen[checked{n, t}] {
		return
	}
	c.seen[checked{n, t}] = true
	if t == nodeType || t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind == yaml.MappingNode {
			c.mapping(n, t, where, structKeys(t))
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			c.mapping(n, t, where, keySet{open: t.Elem()})
		}
	case reflect.Slice, reflect.Array:
		if n.Kind == yaml.SequenceNode {
			for i, item := range n.Content {
				c.check(item, t.Elem(), fmt.Sprintf("%s[%d]", where, i))
			}
		}
	}
	// Scalars and type mismatches are left to the yaml package.
}

// mapping checks the keys of mapping n, of type t, against ks.
func (c *keyChecker) mapping(n *yaml.Node, t reflect.Type, where string, ks keySet) {
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			continue // the yaml package reports what it cannot decode
		}
		if k.ShortTag() == "!!merge" {
			// "<<: *base" or "<<: [*a, *b]" merges mappings into this one:
			// their keys must be known here too.
			merged := []*yaml.Node{deref(v)}
			if merged[0].Kind == yaml.SequenceNode {
				merged = merged[0].Content
			}
			for _, m := range merged {
				if m = deref(m); m.Kind == yaml.MappingNode && !c.seen[checked{m, t}] {
					c.seen[checked{m, t}] = true
					c.mapping(m, t, where, ks)
				}
			}
			continue
		}
		if line, dup := first[k.Value]; dup {
			c.p.at(k, "duplicate key %q%s (first at line %d)", k.Value, in(where), line)
			c.dupLines[k.Line] = true
			continue
		}
		first[k.Value] = k.Line
		ft, ok := ks.fields[k.Value]
		if !ok {
			if ks.open == nil {
				c.p.at(k, "unknown key %q%s (known: %s)", k.Value, in(where), strings.Join(ks.names, ", "))
				continue
			}
			ft = ks.open
		}
		sub := k.Value
		if where != "" {
			sub = where + "." + k.Value
		}
		c.check(v, ft, sub)
	}
}

func in(where string) string {
	if where == "" {
		return ""
	}
	return " in " + where
}

// keySet is what keys a mapping may have: named fields, and (open != nil)
// any other key with values of type open.
type keySet struct {
	fields map[string]reflect.Type
	names  []string // field keys in declaration order, for messages
	open   reflect.Type
}

// structKeys lists the keys the yaml package decodes into struct type t,
// following its rules: exported fields, key from the yaml tag or the lower-cased
// field name, "-" skipped, ",inline" structs flattened and an ",inline" map
// taking every other key.
func structKeys(t reflect.Type) keySet {
	ks := keySet{fields: map[string]reflect.Type{}}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.PkgPath != "" && !f.Anonymous {
				continue
			}
			tag := f.Tag.Get("yaml")
			if tag == "" && !strings.Contains(string(f.Tag), ":") {
				tag = string(f.Tag)
			}
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if strings.Contains(","+opts+",", ",inline,") {
				ft := f.Type
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				switch ft.Kind() {
				case reflect.Struct:
					add(ft)
				case reflect.Map:
					ks.open = ft.Elem()
				}
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			ks.fields[name] = f.Type
			ks.names = append(ks.names, name)
		}
	}
	add(t)
	return ks
}
