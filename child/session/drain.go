package session

import (
	"time"

	"tickrelay/wire"
)

// Drain tells every client the child is going away ("INFO DRAIN <grace>"):
// a cluster client moves to another child within the grace, RESUMEing
// where it was. Frames keep flowing meanwhile; Shutdown ends the rest.
func (l *Loop) Drain(grace time.Duration) {
	line := wire.AppendDrainLine(nil, grace)
	for cl := range l.clients {
		if !cl.dead && cl.conn != nil {
			cl.out = append(cl.out[:0], line...)
			l.writeOut(cl)
		}
	}
}
