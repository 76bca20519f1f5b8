package httpapi

import (
	"io"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// accessLog writes one JSON line per request, in the shape slog's JSON
// handler gives the other logs ({"time","level","msg",…}), so that one
// log pipeline reads both. It formats by hand into pooled buffers: at tens
// of thousands of requests a second, slog's general machinery would cost
// more than the decision it records.
type accessLog struct {
	w    io.Writer
	mu   sync.Mutex
	bufs sync.Pool
}

func newAccessLog(w io.Writer) *accessLog {
	return &accessLog{w: w, bufs: sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}}
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

func (l *accessLog) log(e *accessEntry) {
	bp := l.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"time":"`...)
	b = e.start.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"access","listener":"`...)
	b = append(b, e.listener...)
	b = appendField(b, "method", e.method)
	b = appendField(b, "path", e.path)
	b = appendField(b, "route", e.route)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"duration_us":`...)
	b = strconv.AppendInt(b, e.duration.Microseconds(), 10)
	b = append(b, `,"client":"`...)
	if e.client.IsValid() {
		b = e.client.AppendTo(b)
	}
	b = appendField(b, "peer", e.peer)
	b = appendField(b, "reason", e.reason)
	b = appendField(b, "registry", e.registry)
	b = append(b, "\"}\n"...)
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
	*bp = b
	l.bufs.Put(bp)
}

// appendField closes the previous string value and appends `,"key":"value`
// with value escaped for JSON.
func appendField(b []byte, key, value string) []byte {
	b = append(b, `","`...)
	b = append(b, key...)
	b = append(b, `":"`...)
	return appendJSONEscaped(b, value)
}

// appendJSONEscaped escapes quotes, backslashes and control characters,
// and replaces invalid UTF-8, as encoding/json does for strings.
func appendJSONEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
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
