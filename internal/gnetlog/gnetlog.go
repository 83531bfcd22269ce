// Package gnetlog routes gnet's own logging to slog: its chatty Info goes to
// Debug, Fatal to Error (a library must not exit the process).
package gnetlog

import (
	"fmt"
	"log/slog"
)

// Logger adapts a *slog.Logger to gnet's logging.Logger.
type Logger struct{ L *slog.Logger }

func (g Logger) Debugf(f string, a ...any) { g.L.Debug(fmt.Sprintf(f, a...)) }
func (g Logger) Infof(f string, a ...any)  { g.L.Debug(fmt.Sprintf(f, a...)) }
func (g Logger) Warnf(f string, a ...any)  { g.L.Warn(fmt.Sprintf(f, a...)) }
func (g Logger) Errorf(f string, a ...any) { g.L.Error(fmt.Sprintf(f, a...)) }
func (g Logger) Fatalf(f string, a ...any) { g.L.Error(fmt.Sprintf(f, a...)) }
