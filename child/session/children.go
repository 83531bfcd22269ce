package session

import (
	"tickrelay/child/frames"
	"tickrelay/wire"
)

// The child directory on the client protocol: CHILDREN answers the set in
// one line; WATCH CHILDREN answers it too, then pushes it again each time
// the set changes. The lines come from the child's relay (it merges its
// roots' views) as marker batches, in order with the frames.

// children answers CHILDREN.
func children(l *Loop, cl *Client, _ *wire.Command, _ int64) {
	cl.out = l.appendChildren(cl.out)
}

// watch answers WATCH CHILDREN.
func watch(l *Loop, cl *Client, _ *wire.Command, _ int64) {
	cl.watch = true
	cl.out = l.appendChildren(cl.out)
}

func (l *Loop) appendChildren(dst []byte) []byte {
	if l.children == nil {
		return wire.AppendChildrenLine(dst, 0, nil)
	}
	return append(dst, l.children...)
}

// newChildren takes a directory marker: the line CHILDREN answers from now
// on, pushed to the watching clients when the set changed.
func (l *Loop) newChildren(b *frames.Batch) {
	l.children = b.Children
	if !b.Push {
		return
	}
	for cl := range l.clients {
		if cl.watch && !cl.dead && cl.conn != nil {
			cl.out = append(cl.out[:0], b.Children...)
			l.writeOut(cl)
		}
	}
}
