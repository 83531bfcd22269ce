package session

import (
	"testing"

	"tickrelay/child/frames"
	"tickrelay/internal/feedtest"
)

// applyN applies the test feed's seqs from..to to c (root send 6, child
// receive 7) and returns the batch of their frames.
func applyN(t testing.TB, c *frames.Core, from, to uint64) *frames.Batch {
	b := frames.GetBatch()
	for s := from; s <= to; s++ {
		it := feedtest.Item(s)
		if err := c.Apply(b, &it, 6, 7); err != nil {
			t.Fatal(err)
		}
	}
	return b
}
