package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// splitWords splits a shell line into words as a POSIX shell would, without
// expansions: blanks separate words, 'single quotes' keep everything,
// "double quotes" keep everything but \" and \\, and a backslash outside
// quotes keeps the next character.
func splitWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	r := []rune(line)
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\\':
			if i+1 >= len(r) {
				return nil, errors.New("the line ends with a lone backslash")
			}
			i++
			cur.WriteRune(r[i])
			inWord = true
		case c == '\'':
			closed := false
			for i++; i < len(r); i++ {
				if r[i] == '\'' {
					closed = true
					break
				}
				cur.WriteRune(r[i])
			}
			if !closed {
				return nil, errors.New("unterminated quote (')")
			}
			inWord = true
		case c == '"':
			closed := false
			for i++; i < len(r); i++ {
				if r[i] == '"' {
					closed = true
					break
				}
				if r[i] == '\\' && i+1 < len(r) && (r[i+1] == '"' || r[i+1] == '\\') {
					i++
				}
				cur.WriteRune(r[i])
			}
			if !closed {
				return nil, errors.New(`unterminated quote (")`)
			}
			inWord = true
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// joinWords is the inverse of splitWords: a line that splits into words.
func joinWords(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w != "" && !strings.ContainsAny(w, " \t'\"\\") {
			out[i] = w
			continue
		}
		out[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// historyKeep is how many lines the history file keeps (liner keeps as
// many in memory).
const historyKeep = 1000

// defaultHistoryPath is $XDG_STATE_HOME/abs/shell_history, or
// ~/.abs_shell_history without XDG_STATE_HOME.
func defaultHistoryPath() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "abs", "shell_history"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory for the history file (give --history FILE): %w", err)
	}
	return filepath.Join(home, ".abs_shell_history"), nil
}

// history is the shell's history file: read into the editor at start, each
// new line appended at once (so a killed shell loses nothing), trimmed to
// the last historyKeep lines when it has grown to twice that.
type history struct {
	f    *os.File // nil when the history is not saved
	ed   interface{ AppendHistory(string) }
	last string
	warn func(error)
}

// openHistory loads the history file into ed and opens it for appending,
// creating its directory. Failures are warned about once; the history then
// lives in memory only.
func openHistory(path string, ed interface {
	AppendHistory(string)
}, warn func(error)) *history {
	h := &history{ed: ed, warn: warn}
	if path == "" {
		p, err := defaultHistoryPath()
		if err != nil {
			warn(err)
			return h
		}
		path = p
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		warn(err)
		return h
	}
	lines, err := readHistoryFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		warn(err)
		return h
	}
	if len(lines) > 2*historyKeep {
		lines = lines[len(lines)-historyKeep:]
		if err := rewriteHistory(path, lines); err != nil {
			warn(err)
			return h
		}
	}
	for _, l := range lines {
		ed.AppendHistory(l)
		h.last = l
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		warn(err)
		return h
	}
	h.f = f
	return h
}

func readHistoryFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines, sc.Err()
}

func rewriteHistory(path string, lines []string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// add records a line the operator ran (not twice in a row).
func (h *history) add(line string) {
	line = strings.TrimSpace(line)
	if line == "" || line == h.last || strings.ContainsAny(line, "\n\r") {
		return
	}
	h.last = line
	h.ed.AppendHistory(line)
	if h.f == nil {
		return
	}
	if _, err := h.f.WriteString(line + "\n"); err != nil {
		h.warn(err)
		h.f.Close()
		h.f = nil
	}
}

func (h *history) close() {
	if h.f != nil {
		h.f.Close()
	}
}
