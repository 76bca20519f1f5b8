package loader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// DateToken in a URL stands for a date, YYYYMMDD: the URL names a file
// published under a new dated name each time, found by trying dates.
const DateToken = "{date}"

// How far back dated names are tried: the last two weeks first (Microsoft
// publishes the Service Tags weekly, usually on Mondays), then on to
// searchDays, with a warning, so that a late publication does not stop
// every refresh.
const (
	freshDays  = 14
	searchDays = 56
)

// findDated finds the newest file a URL template names: it tries
// (HEAD, which transfers nothing) the template with today's date, then
// each earlier day. A missing name (404) moves on to the day before;
// any other failure stops the search. It warns when the newest file is
// more than two weeks old.
func (l *Loader) findDated(ctx context.Context, provider, template string) (string, error) {
	today := l.now().UTC().Truncate(24 * time.Hour)
	for back := 0; back <= searchDays; back++ {
		day := today.AddDate(0, 0, -back)
		u := strings.ReplaceAll(template, DateToken, day.Format("20060102"))
		err := l.http.do(ctx, request{method: http.MethodHead, url: u, label: provider + " " + day.Format("2006-01-02") + " (HEAD)"},
			func(*http.Response, io.Reader) error { return nil })
		if se, ok := errors.AsType[*StatusError](err); ok && se.Code == http.StatusNotFound {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("looking for the newest dated file: %w", err)
		}
		if back > freshDays {
			l.log.Warn("the newest published file is more than two weeks old; the provider may have stopped publishing at this address",
				"provider", provider, "url", redact(u), "days_old", back)
		}
		return u, nil
	}
	return "", fmt.Errorf("no file found for any of the last %d days at %s; has the download address changed? (--url %s=… sets it)",
		searchDays+1, redact(template), provider)
}
