package httpapi

import (
	"errors"
	"io"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// AccessLog writes one JSON line per request, in the shape slog's JSON
// handler gives the other logs ({"time","level","msg",…}), so that one log
// pipeline reads both.
//
// At tens of thousands of requests a second on two cores, one shared
// buffer cost more than the decision it records: every line moved the
// buffer's cache lines and its lock between the cores. Lines are therefore
// formatted straight into one of several shard buffers, chosen by the
// request's connection, and Flush hands whole buffers to the underlying
// writer. Within a connection lines keep their order; across connections
// they may be out of order by up to one flush interval (each carries its
// time).
type AccessLog struct {
	out    io.Writer
	outMu  sync.Mutex // serialises writes to out
	shards [accessLogShards]logShard
}

const (
	accessLogShards = 16
	// shardFlushSize is how full a shard's buffer gets before the logging
	// request writes it out itself rather than waiting for Flush.
	shardFlushSize = 32 << 10
)

type logShard struct {
	mu    sync.Mutex
	buf   []byte
	stamp stampCache
	_     [40]byte // keep shards on separate cache lines
}

// stampCache formats times as time.RFC3339Nano does, from the second's
// text formatted once: a line's time is then its nanoseconds appended to
// a copy, where AppendFormat took a sixth of the time to log a line.
type stampCache struct {
	sec  int64
	loc  *time.Location
	head []byte // "2006-01-02T15:04:05"
	zone []byte // "Z" or "-07:00"
}

func (c *stampCache) append(b []byte, t time.Time) []byte {
	if sec := t.Unix(); sec != c.sec || t.Location() != c.loc || c.head == nil {
		// Offsets change on whole seconds, so the zone holds for the second.
		s := t.Truncate(time.Second).AppendFormat(nil, time.RFC3339)
		c.sec, c.loc, c.head, c.zone = sec, t.Location(), s[:19], s[19:]
	}
	b = append(b, c.head...)
	if ns := t.Nanosecond(); ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i > 0; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, c.zone...)
}

// NewAccessLog writes to w, which should take whole writes as they come
// (the server's log writer, which also serialises slog's lines). Call
// Flush periodically and at shutdown.
func NewAccessLog(w io.Writer) *AccessLog {
	l := &AccessLog{out: w}
	for i := range l.shards {
		l.shards[i].buf = make([]byte, 0, shardFlushSize+1024)
	}
	return l
}

// Flush writes every shard's lines to the underlying writer.
func (l *AccessLog) Flush() error {
	var err error
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		if len(s.buf) > 0 {
			err = errors.Join(err, l.write(s.buf))
			s.buf = s.buf[:0]
		}
		s.mu.Unlock()
	}
	return err
}

func (l *AccessLog) write(b []byte) error {
	l.outMu.Lock()
	defer l.outMu.Unlock()
	_, err := l.out.Write(b)
	return err
}

type accessEntry struct {
	start    time.Time
	duration time.Duration
	listener string
	method   string
	path     string
	route    string
	status   int
	client   netip.Addr
	peer     string
	reason   string
	registry string
}

func (l *AccessLog) log(e *accessEntry) {
	s := &l.shards[shardOf(e.peer)]
	s.mu.Lock()
	b := s.buf
	b = append(b, `{"time":"`...)
	b = s.stamp.append(b, e.start)
	b = append(b, `","level":"INFO","msg":"access","listener":"`...)
	b = append(b, e.listener...)
	b = appendField(b, `","method":"`, e.method)
	b = appendField(b, `","path":"`, e.path)
	b = appendField(b, `","route":"`, e.route)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"duration_us":`...)
	b = strconv.AppendInt(b, e.duration.Microseconds(), 10)
	b = append(b, `,"client":"`...)
	if e.client.IsValid() {
		b = e.client.AppendTo(b)
	}
	b = appendField(b, `","peer":"`, e.peer)
	b = appendField(b, `","reason":"`, e.reason)
	b = appendField(b, `","registry":"`, e.registry)
	b = append(b, "\"}\n"...)
	if len(b) >= shardFlushSize {
		_ = l.write(b)
		b = b[:0]
	}
	s.buf = b
	s.mu.Unlock()
}

// shardOf spreads connections (their peer host:port) over the shards.
func shardOf(peer string) int {
	h := uint32(2166136261)
	for i := 0; i < len(peer); i++ {
		h = (h ^ uint32(peer[i])) * 16777619
	}
	return int(h % accessLogShards)
}

// appendField appends a string field after a string value: sep is the
// previous value's closing quote, the comma and the key with its quotes
// and colon (`","key":"`), in one constant, where four appends of its
// pieces cost a fifth of a line's instructions. value is escaped for JSON.
func appendField(b []byte, sep, value string) []byte {
	return appendJSONEscaped(append(b, sep...), value)
}

// jsonSafe[c] is true for the bytes that stand for themselves in a JSON
// string: printable ASCII but '"' and '\\'.
var jsonSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONEscaped escapes quotes, backslashes and control characters,
// and replaces invalid UTF-8, as encoding/json does for strings.
func appendJSONEscaped(b []byte, s string) []byte {
	// Nearly every value (methods, paths, routes, addresses, reasons)
	// needs no escaping: copy it whole.
	i := 0
	for i < len(s) && jsonSafe[s[i]] {
		i++
	}
	b = append(b, s[:i]...)
	const hex = "0123456789abcdef"
	for i < len(s) {
		c := s[i]
		switch {
		case c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf:
			b = append(b, c)
			i++
		case c < utf8.RuneSelf:
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
		}
	}
	return b
}
