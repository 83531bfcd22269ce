package wire

import (
	"bytes"
	"strconv"
)

// Client command verbs.
const (
	CmdSub      = "SUB"
	CmdUnsub    = "UNSUB"
	CmdResume   = "RESUME"
	CmdPing     = "PING"
	CmdTime     = "TIME"
	CmdChildren = "CHILDREN" // the child directory; "WATCH CHILDREN" pushes it on each change
	CmdWatch    = "WATCH"
	CmdAuth     = "AUTH" // the first line where the child has entitlements: "AUTH token"
	CmdAck      = "ACK"  // "ACK seq": a queue-group ack member has handled every item up to seq
	// Alerts (package alert): "HELLO id [fired]" names the client (its
	// alerts are the identity's) and asks for the fires after number
	// fired; "ALERT id sym field op value [repeat hyst]", "UNALERT id",
	// "ALERTS".
	CmdHello   = "HELLO"
	CmdAlert   = "ALERT"
	CmdUnalert = "UNALERT"
	CmdAlerts  = "ALERTS"
)

// KeywordGroup ends a SUB's or UNSUB's symbols: "SUB sym... GROUP name".
const KeywordGroup = "GROUP"

// MaxTokenLen bounds an AUTH token.
const MaxTokenLen = 256

// MaxSymbolLen bounds one symbol of a client command.
const MaxSymbolLen = 16

// AllSymbols subscribes to every symbol.
const AllSymbols = "*"

// Error codes a child sends as "ERR <CODE> <reason>".
const (
	ErrCodeBadCommand = "BADCMD"  // unknown verb
	ErrCodeBadArg     = "BADARG"  // bad or missing argument
	ErrCodeTooLong    = "TOOLONG" // line over MaxLineLen; connection closes
	ErrCodeFlood      = "FLOOD"   // too many commands; connection closes
	ErrCodeSlow       = "SLOW"    // unsent bytes over the limit; connection closes
	// ErrCodeConflated (slow policy conflate): the client fell behind and
	// missed updates; each subscribed symbol's image and "OK SUB sym seq"
	// follow, then every update after seq. The connection lives.
	ErrCodeConflated = "CONFLATED"
	ErrCodeGone      = "GONE" // RESUME seq older than the history held, or of another epoch
	ErrCodeShutdown  = "SHUTDOWN"
	ErrCodeAuth      = "AUTH"   // no AUTH, or a bad token, where entitlements apply; connection closes
	ErrCodeDenied    = "DENIED" // "ERR DENIED sym": the token does not cover sym (or no longer does)
	ErrCodeLimit     = "LIMIT"  // the client holds the most subscriptions it may
	ErrCodeMoved     = "MOVED"  // "ERR MOVED group g: ...": the queue-group member joined on another connection
	// ErrCodeBusy (cluster.go): "ERR BUSY retry=<ms> [try=<addr>]".
)

// Command is one parsed client line. Symbols alias the line.
type Command struct {
	Verb  string
	Seq   uint64 // RESUME
	Epoch uint32 // RESUME epoch:seq (0: the current epoch)
	T0    int64  // TIME
	Token []byte // AUTH
	// SUB/UNSUB ... GROUP name [rr] [ack]: a queue group (the words after
	// GROUP are not symbols).
	Group    []byte
	GroupRR  bool
	GroupAck bool
	Symbols  [][]byte
	// HELLO, ALERT, UNALERT: the words after the verb (package alert reads
	// ALERT's).
	Args [][]byte
}

// NextLine returns the line at the start of buf without its '\n' (a trailing
// '\r' is dropped too) and the bytes it occupies. A buffer holding
// MaxLineLen bytes and no newline is ErrTooLarge.
func NextLine(buf []byte) (line []byte, n int, err error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(buf) >= MaxLineLen {
			return nil, 0, errorf("client line", ErrTooLarge, "no newline in %d bytes", len(buf))
		}
		return nil, 0, ErrShort
	}
	if i+1 > MaxLineLen {
		return nil, 0, errorf("client line", ErrTooLarge, "%d bytes > %d", i+1, MaxLineLen)
	}
	return bytes.TrimSuffix(buf[:i], []byte{'\r'}), i + 1, nil
}

// ParseCommand parses one client line (without its newline).
// syms is reused for Symbols to spare an allocation per command.
func ParseCommand(line []byte, syms [][]byte) (Command, error) {
	words := syms[:0]
	for rest := line; len(rest) > 0; { // split on ' ' without allocating
		w := rest
		if i := bytes.IndexByte(rest, ' '); i >= 0 {
			w, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(w) > 0 {
			words = append(words, w)
		}
	}
	if len(words) == 0 {
		return Command{}, errorf("client line", ErrSyntax, "empty line")
	}
	c := Command{}
	verb, args := words[0], words[1:]
	switch string(verb) {
	case CmdSub, CmdUnsub:
		c.Verb = CmdSub // a constant: string(verb) would allocate
		if string(verb) == CmdUnsub {
			c.Verb = CmdUnsub
		}
		for i, a := range args {
			if string(a) != KeywordGroup {
				continue
			}
			rest := args[i+1:]
			if len(rest) == 0 {
				return c, errorf("client line", ErrSyntax, "GROUP needs a name")
			}
			c.Group = rest[0]
			for _, f := range rest[1:] {
				switch string(f) {
				case "rr":
					c.GroupRR = true
				case "ack":
					c.GroupAck = true
				default:
					return c, errorf("client line", ErrSyntax, "GROUP %.20q: unknown option %.20q (rr, ack)", c.Group, f)
				}
			}
			args = args[:i]
			break
		}
		if len(args) == 0 {
			return c, errorf("client line", ErrSyntax, "%s needs at least one symbol", verb)
		}
	case CmdResume:
		c.Verb = CmdResume
		if len(args) < 2 {
			return c, errorf("client line", ErrSyntax, "RESUME needs a seq and at least one symbol")
		}
		pos := args[0]
		if i := bytes.IndexByte(pos, ':'); i >= 0 { // epoch:seq
			epoch, ok := parseUint(pos[:i])
			if !ok || epoch == 0 || epoch > 1<<32-1 {
				return c, errorf("client line", ErrSyntax, "RESUME epoch %.20q is not an integer in 1..4294967295", pos[:i])
			}
			c.Epoch, pos = uint32(epoch), pos[i+1:]
		}
		seq, err := parseSeq(CmdResume, pos)
		if err != nil {
			return c, err
		}
		c.Seq, args = seq, args[1:]
	case CmdPing:
		c.Verb = CmdPing
		if len(args) != 0 {
			return c, errorf("client line", ErrSyntax, "PING takes no argument")
		}
		return c, nil
	case CmdChildren:
		c.Verb = CmdChildren
		if len(args) != 0 {
			return c, errorf("client line", ErrSyntax, "CHILDREN takes no argument")
		}
		return c, nil
	case CmdWatch:
		c.Verb = CmdWatch
		if len(args) != 1 || string(args[0]) != CmdChildren {
			return c, errorf("client line", ErrSyntax, "WATCH takes one argument: CHILDREN")
		}
		return c, nil
	case CmdAck:
		c.Verb = CmdAck
		if len(args) != 1 {
			return c, errorf("client line", ErrSyntax, "ACK needs one seq")
		}
		seq, err := parseSeq(CmdAck, args[0])
		c.Seq = seq
		return c, err
	case CmdAuth:
		c.Verb = CmdAuth
		if len(args) != 1 {
			return c, errorf("client line", ErrSyntax, "AUTH needs one token")
		}
		if !ValidToken(args[0]) {
			return c, errorf("client line", ErrSyntax, "bad token: 1..%d printable characters", MaxTokenLen)
		}
		c.Token = args[0]
		return c, nil
	case CmdHello, CmdAlert, CmdUnalert, CmdAlerts:
		c.Verb = CmdHello // a constant: string(verb) would allocate
		switch string(verb) {
		case CmdAlert:
			c.Verb = CmdAlert
		case CmdUnalert:
			c.Verb = CmdUnalert
		case CmdAlerts:
			c.Verb = CmdAlerts
		}
		if n, want := len(args), alertArgs[c.Verb]; n < want[0] || n > want[1] {
			return c, errorf("client line", ErrSyntax, "%s takes %d to %d arguments", c.Verb, want[0], want[1])
		}
		c.Args = args
		return c, nil
	case CmdTime:
		c.Verb = CmdTime
		if len(args) != 1 {
			return c, errorf("client line", ErrSyntax, "TIME needs t0")
		}
		t0, ok := parseInt(args[0])
		if !ok {
			return c, errorf("client line", ErrSyntax, "TIME t0 %.20q is not an integer", args[0])
		}
		c.T0 = t0
		return c, nil
	default:
		return c, errorf("client line", ErrUnknownType, "unknown command %.20q", verb)
	}
	for _, s := range args {
		if !ValidSymbol(s) {
			return c, errorf("client line", ErrSyntax, "bad symbol %.20q", s)
		}
	}
	c.Symbols = args
	return c, nil
}

// alertArgs is how many words each alert verb takes (least, most).
var alertArgs = map[string][2]int{CmdHello: {1, 2}, CmdAlert: {5, 7}, CmdUnalert: {1, 1}, CmdAlerts: {0, 0}}

// ValidToken reports whether t is 1..MaxTokenLen printable ASCII
// characters without spaces.
func ValidToken(t []byte) bool {
	if len(t) == 0 || len(t) > MaxTokenLen {
		return false
	}
	for _, c := range t {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// ValidSymbol reports whether s is "*" or 1..MaxSymbolLen of [A-Za-z0-9._-].
func ValidSymbol(s []byte) bool {
	if string(s) == AllSymbols {
		return true
	}
	if len(s) == 0 || len(s) > MaxSymbolLen {
		return false
	}
	for _, c := range s {
		ok := c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// AppendErr appends "ERR <code> <reason>\n"; newlines in reason become spaces.
func AppendErr(dst []byte, code, reason string) []byte {
	dst = append(dst, "ERR "...)
	dst = append(dst, code...)
	dst = append(dst, ' ')
	for i := 0; i < len(reason); i++ {
		c := reason[i]
		if c == '\n' || c == '\r' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\n')
}

// AppendOK appends "OK <verb> [sym] <seq> <epoch>\n" (UNSUB: just the
// symbol).
func AppendOK(dst []byte, verb string, sym []byte, seq uint64, epoch uint32) []byte {
	dst = append(dst, "OK "...)
	dst = append(dst, verb...)
	if sym != nil {
		dst = append(dst, ' ')
		dst = append(dst, sym...)
	}
	if verb != CmdUnsub {
		dst = append(dst, ' ')
		dst = strconv.AppendUint(dst, seq, 10)
		dst = append(dst, ' ')
		dst = strconv.AppendUint(dst, uint64(epoch), 10)
	}
	return append(dst, '\n')
}

// ResetLine is what a child tells its clients when the exchange starts a
// new epoch: "RESET <epoch> <seq> <prev epoch> <prev last>". Every
// subscription goes on in the new epoch, from seq; the previous epoch
// ended at prev last (a client that got less lost the rest).
type ResetLine struct {
	Epoch, Prev   uint32
	Seq, PrevLast uint64
}

// AppendResetLine appends a RESET line.
func AppendResetLine(dst []byte, r ResetLine) []byte {
	dst = append(dst, "RESET "...)
	dst = strconv.AppendUint(dst, uint64(r.Epoch), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, r.Seq, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(r.Prev), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, r.PrevLast, 10)
	return append(dst, '\n')
}

// First reports whether r starts the child's first epoch: nothing came
// before it (it is told to no client).
func (r ResetLine) First() bool { return r.Prev == 0 && r.PrevLast == 0 }

// ParseResetLine parses a RESET line.
func ParseResetLine(line []byte) (ResetLine, error) {
	f := bytes.Fields(line)
	if len(f) != 5 || string(f[0]) != "RESET" {
		return ResetLine{}, errorf("server line", ErrSyntax, "%.60q", line)
	}
	var v [4]uint64
	for i := range v {
		n, ok := parseUint(f[i+1])
		if !ok || (i%2 == 0 && n > 1<<32-1) {
			return ResetLine{}, errorf("server line", ErrSyntax, "%.60q", line)
		}
		v[i] = n
	}
	return ResetLine{Epoch: uint32(v[0]), Seq: v[1], Prev: uint32(v[2]), PrevLast: v[3]}, nil
}

// AppendTimeLine appends the child's answer to TIME: "TIME t0 t1 t2\n".
func AppendTimeLine(dst []byte, t0, t1, t2 int64) []byte {
	dst = append(dst, "TIME "...)
	dst = strconv.AppendInt(dst, t0, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, t1, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, t2, 10)
	return append(dst, '\n')
}

// LineKind classifies a line a child sent.
type LineKind uint8

const (
	LineUnknown   LineKind = iota
	LineFrame              // a data frame: DecodeTextFrame it
	LineOK                 // "OK SUB sym seq", "OK UNSUB sym", "OK RESUME seq"
	LineErr                // "ERR CODE reason"
	LinePong               // "PONG"
	LineTime               // "TIME t0 t1 t2"
	LineReset              // "RESET epoch seq prev prevLast"
	LineChildren           // "CHILDREN epoch name=addr,state,load... ..."
	LineInfo               // "INFO DRAIN grace" (cluster.go)
	LineFired              // "FIRED id seq sym field=value t=ns n=k" (package alert)
	LineAlert              // "ALERT id sym field op value ...": a line of ALERTS
	LineRedeliver          // "REDELIVER group n": n frames a queue-group member gets again (or takes over)
)

// KindOf classifies a server line without decoding it.
func KindOf(line []byte) LineKind {
	switch {
	case bytes.HasPrefix(line, []byte("OK ")):
		return LineOK
	case bytes.HasPrefix(line, []byte("ERR ")):
		return LineErr
	case bytes.Equal(bytes.TrimRight(line, "\r\n"), []byte("PONG")):
		return LinePong
	case bytes.HasPrefix(line, []byte("TIME ")):
		return LineTime
	case bytes.HasPrefix(line, []byte("RESET ")):
		return LineReset
	case bytes.HasPrefix(line, []byte("CHILDREN ")):
		return LineChildren
	case bytes.HasPrefix(line, []byte("INFO ")):
		return LineInfo
	case bytes.HasPrefix(line, []byte("FIRED ")):
		return LineFired
	case bytes.HasPrefix(line, []byte("ALERT ")):
		return LineAlert
	case bytes.HasPrefix(line, []byte("REDELIVER ")):
		return LineRedeliver
	case len(line) > 3 && line[2] == ' ' && typeOfCode(line[:2]) != 0:
		return LineFrame
	}
	return LineUnknown
}

// ParseOK parses "OK <verb> [sym] [seq [epoch]]" (OKEpoch gives the epoch).
func ParseOK(line []byte) (verb string, sym string, seq uint64, err error) {
	f := bytes.Fields(line)
	if len(f) < 3 || string(f[0]) != "OK" {
		return "", "", 0, errorf("server line", ErrSyntax, "%.40q", line)
	}
	verb = string(f[1])
	if n := len(f); (verb == CmdResume && n == 4 || verb == CmdSub && n == 5) && okEpoch(f[n-1]) {
		f = f[:n-1]
	}
	switch {
	case verb == CmdResume && len(f) == 3:
		seq, ok := parseUint(f[2])
		if !ok {
			return "", "", 0, errorf("server line", ErrSyntax, "%.40q", line)
		}
		return verb, "", seq, nil
	case verb == CmdUnsub && len(f) == 3:
		return verb, string(f[2]), 0, nil
	case verb == CmdSub && len(f) == 4:
		seq, ok := parseUint(f[3])
		if !ok {
			return "", "", 0, errorf("server line", ErrSyntax, "%.40q", line)
		}
		return verb, string(f[2]), seq, nil
	}
	return "", "", 0, errorf("server line", ErrSyntax, "%.40q", line)
}

// OKEpoch is the epoch an "OK SUB" or "OK RESUME" line names (0: none).
func OKEpoch(line []byte) uint32 {
	f := bytes.Fields(line)
	if n := len(f); n >= 4 && string(f[0]) == "OK" && (string(f[1]) == CmdResume && n == 4 || string(f[1]) == CmdSub && n == 5) && okEpoch(f[n-1]) {
		e, _ := parseUint(f[n-1])
		return uint32(e)
	}
	return 0
}

func okEpoch(b []byte) bool {
	e, ok := parseUint(b)
	return ok && e <= 1<<32-1
}

// ParseTimeLine parses "TIME t0 t1 t2".
func ParseTimeLine(line []byte) (t0, t1, t2 int64, err error) {
	f := bytes.Fields(line)
	if len(f) != 4 || string(f[0]) != CmdTime {
		return 0, 0, 0, errorf("server line", ErrSyntax, "%.40q", line)
	}
	var ok [3]bool
	t0, ok[0] = parseInt(f[1])
	t1, ok[1] = parseInt(f[2])
	t2, ok[2] = parseInt(f[3])
	if !ok[0] || !ok[1] || !ok[2] {
		return 0, 0, 0, errorf("server line", ErrSyntax, "%.40q", line)
	}
	return t0, t1, t2, nil
}

// parseSeq reads verb's seq argument: an integer in 1..MaxSeq.
func parseSeq(verb string, b []byte) (uint64, error) {
	seq, ok := parseUint(b)
	if !ok || seq == 0 || seq > MaxSeq {
		return 0, errorf("client line", ErrSyntax, "%s seq %.20q is not an integer in 1..4294967295", verb, b)
	}
	return seq, nil
}
