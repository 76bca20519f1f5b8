package store

import (
	"context"
	"sync"
)

// hub fans changes out to the channels Changes returns. Writers never
// wait: a subscriber that has fallen behind has what it had not read
// replaced by one Whole change, so that it reloads.
type hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	ch   chan Change
	stop func() bool // stops the context.AfterFunc that unsubscribes
}

// subBuffer is how many changes a subscriber may fall behind before it
// is told to reload instead: ten seconds of writes at 100 a second, so
// that a reader busy compiling a large set catches up with the changes
// rather than with a reload, which would take longer still.
const subBuffer = 1024

func (h *hub) subscribe(ctx context.Context) <-chan Change {
	ch := make(chan Change, subBuffer)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(ch)
		return ch
	}
	if h.subs == nil {
		h.subs = make(map[*subscriber]struct{})
	}
	s := &subscriber{ch: ch}
	h.subs[s] = struct{}{}
	s.stop = context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[s]; ok {
			delete(h.subs, s)
			close(s.ch)
		}
	})
	return ch
}

// publish sends c to every subscriber. Callers publish in version order.
func (h *hub) publish(c Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- c:
			continue
		default:
		}
		// Full: what is unread is replaced by "reload at c's version".
		// Only publish sends, under mu, so the send below cannot block.
		for drained := false; !drained; {
			select {
			case <-s.ch:
			default:
				drained = true
			}
		}
		s.ch <- Change{Version: c.Version}
	}
}

// close closes every subscriber's channel; later subscriptions get a
// closed channel.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.stop()
		close(s.ch)
	}
	h.subs = nil
	h.closed = true
}
