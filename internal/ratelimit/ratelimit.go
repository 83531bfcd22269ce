// Package ratelimit is a token bucket with the clock passed in: rate
// tokens a second, at most burst held, one taken per event.
package ratelimit

import "time"

// Bucket is a token bucket; the zero value (or a rate <= 0) allows
// everything. It is not safe for concurrent use.
type Bucket struct {
	perNs  float64 // tokens per nanosecond
	burst  float64
	tokens float64
	at     int64 // when tokens was last brought up to date
}

// New returns a full bucket of burst tokens refilled at rate a second
// (burst < 1 holds one).
func New(rate float64, burst int, now int64) Bucket {
	if rate <= 0 {
		return Bucket{}
	}
	b := float64(max(burst, 1))
	return Bucket{perNs: rate / 1e9, burst: b, tokens: b, at: now}
}

// Take takes a token at now. When none is left it reports how long until
// the next one.
func (b *Bucket) Take(now int64) (ok bool, wait time.Duration) {
	if b.perNs == 0 {
		return true, 0
	}
	if now > b.at {
		b.tokens = min(b.burst, b.tokens+float64(now-b.at)*b.perNs)
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / b.perNs)
}
