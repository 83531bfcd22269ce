// Package session is the child's per-event-loop client core: client state,
// the subscription index (fanout), the command table and the slow-consumer
// policy. It knows nothing of gnet or the wall clock: a connection is a Conn
// (write, buffered, close) and time comes from Config.Now, so every path runs
// in tests without sockets. One Loop belongs to one event loop and is touched
// only there; the child's server (child/server.go) feeds it connections,
// bytes and parsed batches.
//
// Where things go:
//   - a new client command: a file of its own holding a func(*Loop, *Client,
//     *wire.Command, int64) and an entry in the commands table (commands.go);
//   - a new per-client policy (a limit, a throttle): a field on Client, the
//     check in Input (per line) or in flush (per write), its ERR code in wire;
//   - a new control frame from the root: applied by the relay to the shared
//     state (child/frames) at its seq, then seen here through frames.Shared,
//     as images and history are.
package session
