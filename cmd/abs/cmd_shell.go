package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/peterh/liner"
	"golang.org/x/term"
)

// shellCmd is `abs shell`, the interactive operator interface. The rest of
// the shell lives in shell_*.go: the prompts for missing arguments
// (shell_prompt.go), completion and the master's names (shell_complete.go),
// words, quoting and the history file (shell_words.go).
type shellCmd struct {
	History string `placeholder:"FILE" help:"Keep the history in FILE (default: $XDG_STATE_HOME/abs/shell_history, else ~/.abs_shell_history)."`
}

func (c *shellCmd) Help() string {
	return `An interactive shell for operators: the operator commands of the CLI (dump,
restore, jobs, abort, status, slaves, volumes, tapes, report), typed without
'abs' and parsed by the same command tree, so flags, help and messages are the
CLI's. 'help' lists the commands and 'help CMD' shows one; 'exit', 'quit' or
Ctrl-D leave. A failing command prints its error and the shell goes on.

On a terminal it offers line editing, a history kept in a file (Up and Down,
Ctrl-R to search), and Tab completion of commands, flags and the names the
master knows: slaves, servers, partitions, volumes, the jobs not ended (for
abort) and tape labels. A command missing an argument asks for it: 'dump
volume' asks "volume:", then "server:" and "partition:" when the name is on
several; 'restore volume NAME' asks "restore to directory:". An empty answer
or Ctrl-C cancels the command. Ctrl-C while a command follows its job stops
following (the job goes on) and returns to the prompt.

With standard input not a terminal it reads one command a line, without
prompts (blank lines and lines starting with # are skipped), and exits with
the status of the last command that failed, or 0.

Examples:
  abs shell --master 127.0.0.1:7400 --certs certs/alice
  abs> dump volume --detach        asks volume:, then server: and partition: if needed
  abs> abort <Tab>                 completes the ID of a job not ended
  abs> help dump volume
  printf 'status\njobs --all\n' | abs shell`
}

func (c *shellCmd) Run(ctx context.Context, g *Globals) error {
	// main's context ends at the first Ctrl-C; in the shell Ctrl-C belongs
	// to the command being run, so only SIGTERM and SIGHUP end the shell.
	base, stop := signal.NotifyContext(context.WithoutCancel(ctx), syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	err := runShell(base, g, os.Stdin, os.Stdout, shellOptions{History: c.History})
	if err != nil && base.Err() != nil {
		return fail(exitFailed, "shell stopped by a signal")
	}
	return err
}

// shellOptions are the shell's own settings.
type shellOptions struct {
	History string // history file; "" for the default place
}

// runShell runs the operator shell with the operator identity and master of
// g until exit, Ctrl-D or the end of its input, or until ctx ends (it then
// stops the command running, restores the terminal and returns ctx's error).
//
// With in the process's standard input and both standard input and output
// terminals, it is interactive (line editing, history, completion, prompts
// for missing arguments); otherwise it reads commands from in, one a line,
// and returns an *exitError with the status of the last command that failed.
// Commands write to the process's standard output and error, as in the CLI;
// out gets the shell's own messages. This is what `abs shell` runs; a master
// started on a terminal may call it too.
func runShell(ctx context.Context, g *Globals, in *os.File, out io.Writer, opts shellOptions) error {
	sh, err := newShell(g, out)
	if err != nil {
		return err
	}
	defer sh.names.close()
	interactive := in.Fd() == os.Stdin.Fd() && term.IsTerminal(int(in.Fd())) && term.IsTerminal(int(os.Stdout.Fd()))

	// Ctrl-C stops the command running; in batch mode it also ends the input.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt)
	defer signal.Stop(sigs)
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go func() {
		for {
			select {
			case <-sigs:
				sh.interrupt()
				if !interactive {
					sh.quit.Store(true)
				}
			case <-stopWatch:
				return
			}
		}
	}()

	done := make(chan error, 1)
	var ed *liner.State
	if interactive {
		ed = liner.NewLiner()
		go func() { done <- sh.interactive(ctx, ed, opts) }()
	} else {
		go func() { done <- sh.batch(ctx, in) }()
	}
	select {
	case err := <-done:
		if ed != nil {
			ed.Close()
		}
		return err
	case <-ctx.Done():
		// The loop may be waiting for a line that never comes: stop what
		// runs, give the terminal back and return without it.
		sh.quit.Store(true)
		sh.interrupt()
		if ed != nil {
			ed.Close()
			fmt.Fprintln(out)
		}
		return ctx.Err()
	}
}

// shell is one session.
type shell struct {
	g     *Globals
	out   io.Writer
	tree  *kong.Kong // the command tree for completion and prompts (never run)
	names *masterNames
	ed    lineEditor // nil in batch mode
	quit  atomic.Bool

	mu     sync.Mutex
	cancel context.CancelFunc // of the command running; nil at the prompt
}

// lineEditor is what the shell needs of liner (a fake in unit tests).
type lineEditor interface {
	Prompt(prompt string) (string, error)
	PromptWithSuggestion(prompt, text string, pos int) (string, error)
	SetWordCompleter(f liner.WordCompleter)
}

func newShell(g *Globals, out io.Writer) (*shell, error) {
	tree, err := newShellParser(func(int) {})
	if err != nil {
		return nil, err
	}
	return &shell{g: g, out: out, tree: tree, names: newMasterNames(g)}, nil
}

// shellExit carries kong's exit (after help) out of a parse.
type shellExit int

// shellCommands are the CLI's commands offered by the shell: the operator
// commands. Daemons and offline tools are not.
var shellCommands = map[string]bool{
	"dump": true, "restore": true, "jobs": true, "abort": true, "status": true,
	"slaves": true, "volumes": true, "tapes": true, "report": true,
	"help": true, "exit": true,
}

// shellTree is the CLI's command tree plus the shell's own commands.
type shellTree struct {
	CLI
	Help shellHelpCmd `cmd:"" help:"List the commands, or show one command's flags and examples."`
	Exit shellExitCmd `cmd:"" aliases:"quit" help:"Leave the shell (also quit, or Ctrl-D)."`
}

const shellDescription = `The abs shell: the operator commands of the CLI, typed without 'abs'.
Tab completes commands, flags and names; a command missing an argument asks
for it; Ctrl-C stops following a job; exit, quit or Ctrl-D leave.

Examples:
  dump volume user.alice --server fs1 --partition vicepa --detach
  jobs --all --limit 20
  help restore volume`

// newShellParser builds a kong parser over the CLI's own command tree and
// keeps only the operator commands, help and exit. The global flags are
// dropped: the shell's --master, --certs and --timeout apply to every line.
func newShellParser(exit func(int)) (*kong.Kong, error) {
	k, err := kong.New(&shellTree{},
		kong.Name("abs"),
		kong.Description(shellDescription),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Exit(exit),
	)
	if err != nil {
		return nil, err
	}
	var children []*kong.Node
	for _, c := range k.Model.Children {
		if shellCommands[c.Name] {
			children = append(children, c)
		}
	}
	k.Model.Children = children
	var flags []*kong.Flag
	for _, f := range k.Model.Flags {
		if f == k.Model.HelpFlag {
			flags = append(flags, f)
		}
	}
	k.Model.Flags = flags
	return k, nil
}

type shellHelpCmd struct {
	Command []string `arg:"" optional:"" placeholder:"COMMAND" help:"A command, like dump volume."`
}

func (c *shellHelpCmd) Run(sh *shell) error {
	_, err := sh.parse(append(c.Command, "--help"))
	return err
}

type shellExitCmd struct{}

func (c *shellExitCmd) Run(sh *shell) error {
	sh.quit.Store(true)
	return nil
}

// parse parses one command line with a fresh parser. After help it returns
// a nil context and no error.
func (sh *shell) parse(args []string) (kctx *kong.Context, err error) {
	k, err := newShellParser(func(code int) { panic(shellExit(code)) })
	if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(shellExit); !ok {
				panic(r)
			}
			kctx, err = nil, nil
		}
	}()
	kctx, err = k.Parse(args)
	if err != nil {
		return nil, fail(exitUsage, "%v", err)
	}
	return kctx, nil
}

// runLine runs one command (its words, without "abs") as the CLI would:
// errors are printed as the CLI prints them; it returns the exit status.
func (sh *shell) runLine(ctx context.Context, args []string) int {
	kctx, err := sh.parse(args)
	if err != nil || kctx == nil {
		return report(err)
	}
	cmdCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	sh.mu.Lock()
	sh.cancel = cancel
	sh.mu.Unlock()
	defer func() {
		sh.mu.Lock()
		sh.cancel = nil
		sh.mu.Unlock()
	}()
	kctx.BindTo(cmdCtx, (*context.Context)(nil))
	kctx.Bind(sh)
	code := report(kctx.Run(sh.g))
	// What the command did may have changed the master's names.
	sh.names.invalidate()
	return code
}

// interrupt stops the command running, if any (Ctrl-C).
func (sh *shell) interrupt() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.cancel != nil {
		sh.cancel()
	}
}

// words splits a line into a command's words; ok is false for a blank
// line or a comment.
func shellWords(line string) (words []string, ok bool, err error) {
	trimmed := strings.TrimSpace(line)
	if trimmed == "" || strings.HasPrefix(trimmed, "#") {
		return nil, false, nil
	}
	words, err = splitWords(trimmed)
	if err != nil {
		return nil, true, fail(exitUsage, "%v", err)
	}
	if len(words) > 0 && words[0] == "abs" { // pasted from the CLI
		words = words[1:]
	}
	return words, len(words) > 0, nil
}

// batch runs the commands read from in, one a line, without prompts.
func (sh *shell) batch(ctx context.Context, in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	last := exitOK
	for !sh.quit.Load() && ctx.Err() == nil && sc.Scan() {
		words, ok, err := shellWords(sc.Text())
		if err != nil {
			last = report(err)
			continue
		}
		if !ok {
			continue
		}
		if code := sh.runLine(ctx, words); code != exitOK {
			last = code
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "abs: reading commands: %v\n", err)
		last = exitFailed
	}
	if last != exitOK {
		return &exitError{code: last}
	}
	return nil
}

const shellPrompt = "abs> "

// interactive is the terminal loop: line editing, history, completion and
// prompts for missing arguments. It ends with exit, quit or Ctrl-D.
func (sh *shell) interactive(ctx context.Context, ed *liner.State, opts shellOptions) error {
	ed.SetCtrlCAborts(true)
	ed.SetTabCompletionStyle(liner.TabPrints)
	ed.SetWordCompleter(sh.complete)
	sh.ed = ed
	hist := openHistory(opts.History, ed, func(err error) {
		fmt.Fprintf(sh.out, "abs: history: %v (going on without saving it)\n", err)
	})
	defer hist.close()
	master := sh.g.MasterAddr
	if master == "" {
		master = "no master yet (give --master or set ABS_MASTER)"
	}
	fmt.Fprintf(sh.out, "abs shell: %s. help lists the commands; Tab completes; Ctrl-D leaves.\n", master)
	for !sh.quit.Load() && ctx.Err() == nil {
		line, err := ed.Prompt(shellPrompt)
		switch {
		case errors.Is(err, liner.ErrPromptAborted):
			continue
		case errors.Is(err, io.EOF):
			fmt.Fprintln(sh.out)
			return nil
		case err != nil:
			return fmt.Errorf("reading the terminal: %w", err)
		}
		words, ok, err := shellWords(line)
		if err != nil {
			hist.add(line)
			report(err)
			continue
		}
		if !ok {
			continue
		}
		filled, asked, ok := sh.fillMissing(words)
		if !ok {
			hist.add(line)
			fmt.Fprintln(sh.out, "cancelled")
			continue
		}
		if asked {
			// Remember the whole command, so Up runs it again without asking.
			hist.add(joinWords(filled))
		} else {
			hist.add(line)
		}
		sh.runLine(ctx, filled)
	}
	return nil
}
