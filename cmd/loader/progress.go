package main

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/reghost/reghost/internal/loader"
)

// isTerminal reports whether w is a terminal, where progress bars can be
// redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressBar draws one bar per download on w.
func progressBar(w io.Writer) loader.Progress {
	return func(label string, size int64) io.WriteCloser {
		return &bar{progressbar.NewOptions64(size,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(label),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionOnCompletion(func() { io.WriteString(w, "\n") }),
		)}
	}
}

// bar ends its progress bar when closed: full when everything arrived,
// where it stopped otherwise.
type bar struct{ *progressbar.ProgressBar }

func (b *bar) Close() error {
	if s := b.State(); s.Max > 0 && s.CurrentNum < s.Max {
		return b.Exit()
	}
	return b.Finish()
}
