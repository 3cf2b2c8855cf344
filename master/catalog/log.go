package catalog

import (
	"context"
	"fmt"
	"log/slog"
)

// pebbleLogger routes pebble's logging to slog: pebble narrates flushes,
// compactions and WAL recycling at info level, which is debug detail for
// abs; its errors (background I/O errors) are errors.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) logf(level slog.Level, format string, args []any) string {
	ctx := context.Background()
	if !p.l.Enabled(ctx, level) {
		return ""
	}
	msg := fmt.Sprintf(format, args...)
	p.l.Log(ctx, level, msg, "component", "pebble")
	return msg
}

func (p pebbleLogger) Infof(format string, args ...any)  { p.logf(slog.LevelDebug, format, args) }
func (p pebbleLogger) Errorf(format string, args ...any) { p.logf(slog.LevelError, format, args) }

// Fatalf must not return (pebble calls it on corruption it cannot go past).
// Crash, don't limp: the master restarts, and the catalog can be rebuilt.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble")
	panic("catalog: pebble: " + msg)
}
