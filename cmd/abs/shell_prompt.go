package main

import (
	"strings"

	"github.com/alecthomas/kong"
)

// lineInfo is what a command line's words say, read against the kong tree
// the way kong reads them: the command, its positional arguments, its flags.
type lineInfo struct {
	node    *kong.Node        // the command selected so far (the root if none)
	path    string            // its words: "dump volume"
	args    []string          // positional arguments
	flags   map[string]string // flags given, by name ("" for a bool)
	pending *kong.Flag        // the last word is a flag still wanting its value
	help    bool              // -h or --help
}

// analyze reads words (without "abs") against the tree under root. It
// never fails: what kong would refuse is left for kong to say.
func analyze(root *kong.Node, words []string) lineInfo {
	li := lineInfo{node: root, flags: map[string]string{}}
	dashdash := false
	var path []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		li.pending = nil
		switch {
		case dashdash:
			li.args = append(li.args, w)
		case w == "--":
			dashdash = true
		case strings.HasPrefix(w, "--"):
			name, val, hasVal := strings.Cut(w[2:], "=")
			if name == "help" {
				li.help = true
			}
			f := findFlag(li.node, func(f *kong.Flag) bool { return f.Name == name || contains(f.Aliases, name) })
			if f == nil {
				continue
			}
			switch {
			case hasVal || f.IsBool() || f.IsCounter():
				li.flags[f.Name] = val
			case i+1 < len(words):
				i++
				li.flags[f.Name] = words[i]
			default:
				li.pending = f
			}
		case len(w) > 1 && w[0] == '-':
			short := []rune(w[1:])[0]
			if short == 'h' {
				li.help = true
			}
			f := findFlag(li.node, func(f *kong.Flag) bool { return f.Short == short })
			if f == nil {
				continue
			}
			switch {
			case f.IsBool() || f.IsCounter():
				li.flags[f.Name] = ""
			case len([]rune(w)) > 2:
				li.flags[f.Name] = string([]rune(w)[2:])
			case i+1 < len(words):
				i++
				li.flags[f.Name] = words[i]
			default:
				li.pending = f
			}
		default:
			if len(li.args) == 0 {
				if c := findChild(li.node, w); c != nil {
					li.node = c
					path = append(path, c.Name)
					continue
				}
			}
			li.args = append(li.args, w)
		}
	}
	li.path = strings.Join(path, " ")
	return li
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// findFlag finds a flag of node or of one of its parents.
func findFlag(node *kong.Node, match func(*kong.Flag) bool) *kong.Flag {
	for n := node; n != nil; n = n.Parent {
		for _, f := range n.Flags {
			if match(f) {
				return f
			}
		}
	}
	return nil
}

func findChild(node *kong.Node, name string) *kong.Node {
	for _, c := range node.Children {
		if c.Name == name || contains(c.Aliases, name) {
			return c
		}
	}
	return nil
}

// place is where a name lives: a server, a partition of it, a volume on it.
// The fields a filter leaves empty match anything.
type place struct{ server, partition, volume string }

// known is what the line already says of the target.
func (li lineInfo) known() place {
	p := place{server: li.flags["server"], partition: li.flags["partition"], volume: li.flags["volume"]}
	arg := ""
	if len(li.args) > 0 {
		arg = li.args[0]
	}
	switch li.path {
	case "dump volume", "restore volume":
		p.volume = arg
	case "dump partition":
		p.partition = arg
	case "dump server":
		p.server = arg
	}
	return p
}

// positionalAsk is how the shell asks for a missing positional argument and
// which names it offers.
func positionalAsk(path string, p *kong.Positional) (label string, kind nameKind) {
	switch path {
	case "dump volume":
		return "volume", volumeNames
	case "restore volume":
		return "volume", dumpedVolumeNames
	case "dump partition":
		return "partition", partitionNames
	case "dump server":
		return "server", serverNames
	case "abort":
		return "job", activeJobNames
	}
	return p.Name, kindOf(p.Name)
}

// flagAsk is how the shell asks for a missing required flag.
func flagAsk(f *kong.Flag) (label string, kind nameKind) {
	if f.Name == "to" {
		return "restore to directory", noNames
	}
	return f.Name, kindOf(f.Name)
}

// fillMissing asks, on the terminal, for what a command needs and the line
// does not give: its positional arguments, its required flags, and for a
// volume asked for whose name several servers or partitions hold, which one. It
// returns the completed words, whether it asked anything, and false if the
// operator cancelled (an empty answer, Ctrl-C or Ctrl-D). Only a line that
// kong would accept once completed is asked about; any other (help, no
// command, a bad flag or value) is left as it is for kong to judge.
func (sh *shell) fillMissing(words []string) ([]string, bool, bool) {
	root := sh.tree.Model.Node
	li := analyze(root, words)
	if sh.ed == nil || li.help || li.pending != nil || li.node == root || len(li.node.Children) > 0 {
		return words, false, true
	}
	var args []*kong.Positional
	for i := len(li.args); i < len(li.node.Positional) && li.node.Positional[i].Required; i++ {
		args = append(args, li.node.Positional[i])
	}
	var flags []*kong.Flag
	for n := li.node; n != nil; n = n.Parent {
		for _, f := range n.Flags {
			if _, given := li.flags[f.Name]; f.Required && !f.Hidden && !given {
				flags = append(flags, f)
			}
		}
	}
	trial := append([]string(nil), words...)
	for range args {
		trial = append(trial, "x")
	}
	for _, f := range flags {
		trial = insertFlag(trial, f.Name, "x")
	}
	if _, err := sh.parse(trial); err != nil {
		return words, false, true
	}

	out := append([]string(nil), words...)
	asked := false
	for _, p := range args {
		label, kind := positionalAsk(li.path, p)
		ans, ok := sh.ask(label, kind, li.known(), "")
		if !ok {
			return nil, asked, false
		}
		asked = true
		if strings.HasPrefix(ans, "-") && !contains(out, "--") {
			out = append(out, "--")
		}
		out = append(out, ans)
		li = analyze(root, out)
	}
	// A volume name asked for may be held by several places: ask which. A
	// line that names its volume keeps the CLI's meaning (any place).
	if (li.path == "dump volume" || li.path == "restore volume") && len(args) > 0 {
		kind := volumeNames
		if li.path == "restore volume" {
			kind = dumpedVolumeNames
		}
		var ok, more bool
		out, more, ok = sh.whichPlace(out, li, kind)
		asked = asked || more
		if !ok {
			return nil, asked, false
		}
		li = analyze(root, out)
	}
	for _, f := range flags {
		if _, given := li.flags[f.Name]; given { // answered above (--server)
			continue
		}
		label, kind := flagAsk(f)
		suggest := ""
		if kind != noNames {
			if names := sh.names.list(kind, li.known()); len(names) == 1 {
				suggest = names[0]
			}
		}
		ans, ok := sh.ask(label, kind, li.known(), suggest)
		if !ok {
			return nil, asked, false
		}
		asked = true
		out = insertFlag(out, f.Name, ans)
		li = analyze(root, out)
	}
	return out, asked, true
}

// whichPlace asks for the server, then the partition, of a volume whose
// name is held by several (as far as the master knows; nothing is asked
// when it cannot say).
func (sh *shell) whichPlace(out []string, li lineInfo, kind nameKind) ([]string, bool, bool) {
	k := li.known()
	if k.volume == "" || (k.server != "" && k.partition != "") {
		return out, false, true
	}
	holders := sh.names.places(kind, place{volume: k.volume})
	match := func(p place, server, partition string) bool {
		return (server == "" || p.server == server) && (partition == "" || p.partition == partition)
	}
	distinct := func(get func(place) string, server, partition string) []string {
		var out []string
		for _, p := range holders {
			if v := get(p); v != "" && match(p, server, partition) && !contains(out, v) {
				out = append(out, v)
			}
		}
		return out
	}
	asked := false
	if k.server == "" {
		servers := distinct(func(p place) string { return p.server }, "", k.partition)
		if len(servers) > 1 {
			ans, ok := sh.ask("server", serverNames, place{volume: k.volume, partition: k.partition}, "")
			if !ok {
				return nil, asked, false
			}
			asked = true
			k.server = ans
			out = insertFlag(out, "server", ans)
		}
		if k.partition == "" && k.server == "" && len(servers) == 1 {
			// A partition is asked only with its server (the master
			// needs both), which is then the only one.
			if parts := distinct(func(p place) string { return p.partition }, servers[0], ""); len(parts) > 1 {
				k.server = servers[0]
				out = insertFlag(out, "server", k.server)
			}
		}
	}
	if k.partition == "" && k.server != "" {
		if parts := distinct(func(p place) string { return p.partition }, k.server, ""); len(parts) > 1 {
			ans, ok := sh.ask("partition", partitionNames, place{volume: k.volume, server: k.server}, "")
			if !ok {
				return nil, asked, false
			}
			asked = true
			out = insertFlag(out, "partition", ans)
		}
	}
	return out, asked, true
}

// insertFlag adds --name=value to a command line, before a "--" if there is
// one (after it, kong reads only positional arguments).
func insertFlag(words []string, name, value string) []string {
	flag := "--" + name + "=" + value
	for i, w := range words {
		if w == "--" {
			return append(append(append([]string(nil), words[:i]...), flag), words[i:]...)
		}
	}
	return append(words, flag)
}

// ask prompts for one value, offering the names of kind (filtered by what
// the line says) to Tab, with suggest already typed. An empty answer,
// Ctrl-C or Ctrl-D cancel.
func (sh *shell) ask(label string, kind nameKind, filter place, suggest string) (string, bool) {
	sh.ed.SetWordCompleter(func(line string, pos int) (string, []string, string) {
		r := []rune(line)
		if pos > len(r) {
			pos = len(r)
		}
		prefix := string(r[:pos])
		return "", withPrefix(sh.names.list(kind, filter), prefix, ""), string(r[pos:])
	})
	defer sh.ed.SetWordCompleter(sh.complete)
	ans, err := sh.ed.PromptWithSuggestion(label+": ", suggest, -1)
	if err != nil {
		return "", false
	}
	ans = strings.TrimSpace(ans)
	return ans, ans != ""
}
