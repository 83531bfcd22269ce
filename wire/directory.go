package wire

import (
	"bytes"
	"encoding/binary"
	"strconv"
)

// The child directory. Each child announces itself to its roots on the
// relay line; each root sends its children the set it knows.
//
//	Announce  'A' child->root  state u8, load (4 x u32), nameLen u8, name, addr (rest)
//	Directory 'D' root->child  epoch u64, count u16, count x
//	                           {state u8, load (4 x u32), nameLen u8, name, addrLen u8, addr}

// ChildState is a child's state in the directory.
type ChildState uint8

const (
	ChildUp       ChildState = 0 // takes clients
	ChildDraining ChildState = 1 // going away: its clients should move
)

// String names the state as the client protocol shows it.
func (s ChildState) String() string {
	switch s {
	case ChildUp:
		return "up"
	case ChildDraining:
		return "draining"
	}
	return "unknown"
}

// ChildLoad is what a child reports of its load.
type ChildLoad struct {
	Clients, Subs uint32
	Rate          uint32 // deliveries per second
	Backlog       uint32 // fan-out backlog, in items
}

// ChildInfo is one child as the directory knows it.
type ChildInfo struct {
	Name, Addr string
	State      ChildState
	Load       ChildLoad
}

// Bounds of a directory entry.
const (
	MaxChildName = 64
	MaxChildAddr = 255
	// MaxDirectory bounds a Directory's entries.
	MaxDirectory = 4096
)

const (
	childFixed     = 1 + 16 + 1 // state, load, name length
	announceFixed  = childFixed
	directoryFixed = 8 + 2
)

func appendLoad(dst []byte, l ChildLoad) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, l.Clients)
	dst = le.AppendUint32(dst, l.Subs)
	dst = le.AppendUint32(dst, l.Rate)
	return le.AppendUint32(dst, l.Backlog)
}

func parseLoad(p []byte) ChildLoad {
	le := binary.LittleEndian
	return ChildLoad{Clients: le.Uint32(p), Subs: le.Uint32(p[4:]), Rate: le.Uint32(p[8:]), Backlog: le.Uint32(p[12:])}
}

// checkChild reports what is wrong with c for the wire (nil: nothing).
func checkChild(what string, c ChildInfo) error {
	switch {
	case c.Name == "" || len(c.Name) > MaxChildName:
		return errorf(what, ErrTooLarge, "child name of %d bytes: want 1..%d", len(c.Name), MaxChildName)
	case c.Addr == "" || len(c.Addr) > MaxChildAddr:
		return errorf(what, ErrTooLarge, "child address of %d bytes: want 1..%d", len(c.Addr), MaxChildAddr)
	case c.State > ChildDraining:
		return errorf(what, ErrSyntax, "child state %d", c.State)
	}
	return nil
}

// AppendAnnounce appends an Announce frame for c, or reports why c cannot
// be sent.
func AppendAnnounce(dst []byte, c ChildInfo) ([]byte, error) {
	if err := checkChild("announce", c); err != nil {
		return dst, err
	}
	dst = appendRelayHeader(dst, RelayAnnounce, announceFixed+len(c.Name)+len(c.Addr))
	dst = append(dst, byte(c.State))
	dst = appendLoad(dst, c.Load)
	dst = append(dst, byte(len(c.Name)))
	dst = append(dst, c.Name...)
	return append(dst, c.Addr...), nil
}

// ParseAnnounce decodes an Announce payload.
func ParseAnnounce(p []byte) (ChildInfo, error) {
	if len(p) < announceFixed {
		return ChildInfo{}, errorf("announce", ErrTruncated, "payload %d < %d", len(p), announceFixed)
	}
	c := ChildInfo{State: ChildState(p[0]), Load: parseLoad(p[1:])}
	n := int(p[17])
	if len(p) < announceFixed+n {
		return ChildInfo{}, errorf("announce", ErrTruncated, "name of %d bytes in %d", n, len(p)-announceFixed)
	}
	c.Name, c.Addr = string(p[announceFixed:announceFixed+n]), string(p[announceFixed+n:])
	return c, checkChild("announce", c)
}

// AppendDirectory appends a Directory frame: the children a root knows at
// epoch (which grows with each change it sends).
func AppendDirectory(dst []byte, epoch uint64, children []ChildInfo) ([]byte, error) {
	if len(children) > MaxDirectory {
		return dst, errorf("directory", ErrTooLarge, "%d children > %d", len(children), MaxDirectory)
	}
	size := directoryFixed
	for _, c := range children {
		if err := checkChild("directory", c); err != nil {
			return dst, err
		}
		size += childFixed + len(c.Name) + 1 + len(c.Addr)
	}
	if size+1 > MaxRelayFrame {
		return dst, errorf("directory", ErrTooLarge, "%d bytes > %d", size, MaxRelayFrame)
	}
	dst = appendRelayHeader(dst, RelayDirectory, size)
	dst = binary.LittleEndian.AppendUint64(dst, epoch)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(children)))
	for _, c := range children {
		dst = append(dst, byte(c.State))
		dst = appendLoad(dst, c.Load)
		dst = append(dst, byte(len(c.Name)))
		dst = append(dst, c.Name...)
		dst = append(dst, byte(len(c.Addr)))
		dst = append(dst, c.Addr...)
	}
	return dst, nil
}

// ParseDirectory decodes a Directory payload.
func ParseDirectory(p []byte) (epoch uint64, children []ChildInfo, err error) {
	if len(p) < directoryFixed {
		return 0, nil, errorf("directory", ErrTruncated, "payload %d < %d", len(p), directoryFixed)
	}
	epoch = binary.LittleEndian.Uint64(p)
	n := int(binary.LittleEndian.Uint16(p[8:]))
	if n > MaxDirectory {
		return 0, nil, errorf("directory", ErrTooLarge, "%d children > %d", n, MaxDirectory)
	}
	rest := p[directoryFixed:]
	children = make([]ChildInfo, 0, min(n, len(rest)/(childFixed+2)))
	for i := range n {
		if len(rest) < childFixed {
			return 0, nil, errorf("directory", ErrTruncated, "child %d of %d", i, n)
		}
		c := ChildInfo{State: ChildState(rest[0]), Load: parseLoad(rest[1:])}
		nl := int(rest[17])
		if len(rest) < childFixed+nl+1 {
			return 0, nil, errorf("directory", ErrTruncated, "child %d of %d: name", i, n)
		}
		c.Name = string(rest[childFixed : childFixed+nl])
		al := int(rest[childFixed+nl])
		rest = rest[childFixed+nl+1:]
		if len(rest) < al {
			return 0, nil, errorf("directory", ErrTruncated, "child %d of %d: address", i, n)
		}
		c.Addr, rest = string(rest[:al]), rest[al:]
		if err := checkChild("directory", c); err != nil {
			return 0, nil, err
		}
		children = append(children, c)
	}
	if len(rest) != 0 {
		return 0, nil, errorf("directory", ErrTruncated, "%d bytes after %d children", len(rest), n)
	}
	return epoch, children, nil
}

// AppendChildrenLine appends the client protocol's answer to CHILDREN:
// "CHILDREN <epoch> name=addr,state,clients,subs,rate,backlog ...".
func AppendChildrenLine(dst []byte, epoch uint64, children []ChildInfo) []byte {
	dst = append(dst, "CHILDREN "...)
	dst = strconv.AppendUint(dst, epoch, 10)
	for _, c := range children {
		dst = append(dst, ' ')
		dst = append(dst, c.Name...)
		dst = append(dst, '=')
		dst = append(dst, c.Addr...)
		dst = append(dst, ',')
		dst = append(dst, c.State.String()...)
		for _, v := range [4]uint32{c.Load.Clients, c.Load.Subs, c.Load.Rate, c.Load.Backlog} {
			dst = append(dst, ',')
			dst = strconv.AppendUint(dst, uint64(v), 10)
		}
	}
	return append(dst, '\n')
}

// ParseChildrenLine parses a CHILDREN line.
func ParseChildrenLine(line []byte) (epoch uint64, children []ChildInfo, err error) {
	f := bytes.Fields(line)
	bad := func() error { return errorf("server line", ErrSyntax, "%.60q", line) }
	if len(f) < 2 || string(f[0]) != CmdChildren {
		return 0, nil, bad()
	}
	var ok bool
	if epoch, ok = parseUint(f[1]); !ok {
		return 0, nil, bad()
	}
	for _, w := range f[2:] {
		name, rest, found := bytes.Cut(w, []byte("="))
		parts := bytes.Split(rest, []byte(","))
		if !found || len(parts) != 6 {
			return 0, nil, bad()
		}
		c := ChildInfo{Name: string(name), Addr: string(parts[0])}
		switch string(parts[1]) {
		case "up":
		case "draining":
			c.State = ChildDraining
		default:
			return 0, nil, bad()
		}
		var v [4]uint64
		for i := range v {
			if v[i], ok = parseUint(parts[2+i]); !ok || v[i] > 1<<32-1 {
				return 0, nil, bad()
			}
		}
		c.Load = ChildLoad{Clients: uint32(v[0]), Subs: uint32(v[1]), Rate: uint32(v[2]), Backlog: uint32(v[3])}
		if checkChild("server line", c) != nil {
			return 0, nil, bad()
		}
		children = append(children, c)
	}
	return epoch, children, nil
}
