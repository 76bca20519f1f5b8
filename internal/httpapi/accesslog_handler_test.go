package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"
)

// The access log's handler writes what slog's JSON handler writes, byte
// for byte, for records of every kind of value and for random strings.
func TestAccessLogHandlerMatchesSlog(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 4, 30, 1, 123456789, time.FixedZone("", 3600))
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"a", "é", "😀", "\"", "\\", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "\xff", "\xe2\x80", "\u2028", "\u2029", "<>&", "/v2/", " "}
	randomString := func() string {
		var s string
		for range rng.IntN(8) {
			s += pieces[rng.IntN(len(pieces))]
		}
		return s
	}
	type rec struct {
		msg   string
		attrs []slog.Attr
	}
	recs := []rec{
		{"access", []slog.Attr{slog.String("listener", "public"), slog.String("method", "GET"), slog.String("path", "/v2/pause/manifests/3.9"),
			slog.Int("status", 307), slog.Int64("duration_us", 12), slog.String("client", ""), slog.String("reason", "country:SE")}},
		{"kinds", []slog.Attr{slog.Uint64("u", 1<<63), slog.Bool("b", true), slog.Duration("d", 1500*time.Millisecond),
			slog.Time("t", at), slog.Float64("f", 0.1), slog.Float64("big", 1e21), slog.Any("err", errors.New("bad <x>")),
			slog.Any("m", map[string]any{"x": "<&>", "n": 1}), slog.Any("nil", nil), slog.Attr{}}},
		{"groups", []slog.Attr{slog.Group("g", slog.String("a", "1"), slog.Group("h", slog.Int("b", 2))), slog.Group("empty"), slog.Group("", slog.String("inline", "x"))}},
		{"", nil},
	}
	for range 500 {
		var as []slog.Attr
		for range rng.IntN(5) {
			as = append(as, slog.String(randomString(), randomString()))
		}
		recs = append(recs, rec{randomString(), as})
	}
	for _, with := range []func(slog.Handler) slog.Handler{
		func(h slog.Handler) slog.Handler { return h },
		func(h slog.Handler) slog.Handler { return h.WithAttrs([]slog.Attr{slog.String("pre", "x\n")}) },
		func(h slog.Handler) slog.Handler { return h.WithGroup("grp").WithAttrs([]slog.Attr{slog.Int("n", 1)}) },
	} {
		for _, r := range recs {
			var got, want bytes.Buffer
			for _, out := range []struct {
				h   slog.Handler
				buf *bytes.Buffer
			}{{NewAccessLogHandler(&got), &got}, {slog.NewJSONHandler(&want, nil), &want}} {
				record := slog.NewRecord(at, slog.LevelInfo, r.msg, 0)
				record.AddAttrs(r.attrs...)
				if err := with(out.h).Handle(context.Background(), record); err != nil {
					t.Fatal(err)
				}
			}
			if got.String() != want.String() {
				t.Fatalf("got  %s\nwant %s", got.Bytes(), want.Bytes())
			}
		}
	}
}

func BenchmarkAccessLogHandler(b *testing.B) {
	for _, h := range []struct {
		name string
		h    slog.Handler
	}{{"slog", slog.NewJSONHandler(io.Discard, nil)}, {"reghost", NewAccessLogHandler(io.Discard)}} {
		b.Run(h.name, func(b *testing.B) {
			l := slog.New(h.h)
			b.ReportAllocs()
			for b.Loop() {
				l.LogAttrs(context.Background(), slog.LevelInfo, "access",
					slog.String("listener", "public"), slog.String("method", "GET"), slog.String("path", "/v2/pause/manifests/3.9"),
					slog.String("route", "/v2/*"), slog.Int("status", 307), slog.Int64("duration_us", 12),
					slog.String("client", "89.160.20.112"), slog.String("peer", "127.0.0.1:5555"), slog.String("reason", "country:SE"), slog.String("registry", "hub"))
			}
		})
	}
}
