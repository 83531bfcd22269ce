package session

import (
	"errors"

	"tickrelay/child/frames"
	"tickrelay/wire"
)

// command runs one parsed client line; recv is when its bytes arrived.
// Subscription changes happen on the loop, between drains, so they are
// ordered with the loop's frame queue.
type command func(l *Loop, cl *Client, cmd *wire.Command, recv int64)

// commands is the command table, by verb.
var commands = map[string]command{
	wire.CmdPing:     ping,
	wire.CmdTime:     timeCmd,
	wire.CmdSub:      sub,
	wire.CmdUnsub:    unsub,
	wire.CmdResume:   resume,
	wire.CmdChildren: children,
	wire.CmdWatch:    watch,
	wire.CmdAuth:     auth,
	wire.CmdAck:      ackCmd,
	wire.CmdHello:    hello,
	wire.CmdAlert:    alertCmd,
	wire.CmdUnalert:  unalert,
	wire.CmdAlerts:   alertsCmd,
}

// command parses one client line and runs its verb.
func (l *Loop) command(cl *Client, line []byte, recv int64) {
	if len(line) == 0 || !l.gate(cl, line) {
		return
	}
	cmd, err := wire.ParseCommand(line, cl.syms[:0])
	if err != nil {
		code := wire.ErrCodeBadArg
		if errors.Is(err, wire.ErrUnknownType) {
			code = wire.ErrCodeBadCommand
		}
		l.replyErr(cl, code, shortReason(err))
		return
	}
	run, ok := commands[cmd.Verb]
	if !ok { // parsed but served nowhere: a verb wire knows and the table lacks
		l.replyErr(cl, wire.ErrCodeBadCommand, "unknown command "+cmd.Verb)
		return
	}
	if cmd.Verb == wire.CmdSub || cmd.Verb == wire.CmdUnsub || cmd.Verb == wire.CmdResume {
		if l.lagging() { // answered in the core's epoch, once the loop is there
			l.deferred = append(l.deferred, deferredLine{cl, append([]byte(nil), line...), recv})
			return
		}
	}
	if !l.throttle(cl, cmd.Verb, recv) {
		return
	}
	cl.syms = cmd.Symbols[:0]
	cmd.Symbols = l.distinct(cl, cmd.Symbols)
	if cmd.Verb == wire.CmdSub || cmd.Verb == wire.CmdResume {
		if l.permitted(cl, &cmd); len(cmd.Symbols) == 0 {
			return
		}
	}
	run(l, cl, &cmd, recv)
}

func ping(_ *Loop, cl *Client, _ *wire.Command, _ int64) {
	cl.out = append(cl.out, "PONG\n"...)
}

func timeCmd(l *Loop, cl *Client, cmd *wire.Command, recv int64) {
	cl.out = wire.AppendTimeLine(cl.out, cmd.T0, recv, l.cfg.Now())
}

// distinct drops the repeats of a symbol (by canonical form) from syms, in
// place: each is answered once. It leaves the symbols' hashes, in order,
// in cl.hashes, for the command to use.
func (l *Loop) distinct(cl *Client, syms [][]byte) [][]byte {
	clear(l.seen)
	out := syms[:0]
	cl.hashes = cl.hashes[:0]
	for _, sym := range syms {
		cl.sym = frames.CanonicalSymbol(cl.sym[:0], sym)
		h := frames.SymbolHash(cl.sym)
		if _, dup := l.seen[h]; !dup {
			l.seen[h] = struct{}{}
			out = append(out, sym)
			cl.hashes = append(cl.hashes, h)
		}
	}
	return out
}

// shortReason is what a client is told of a line that did not parse: the
// wire error's detail (`unknown command "X"`), not its internal chain.
func shortReason(err error) string {
	var we *wire.Error
	if errors.As(err, &we) {
		if we.Detail != "" {
			return we.Detail
		}
		return we.Kind.Error()
	}
	return err.Error()
}

// isAll reports whether sym is "*".
func isAll(sym []byte) bool { return string(sym) == wire.AllSymbols }
