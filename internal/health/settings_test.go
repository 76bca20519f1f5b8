package health

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWithDefaultsLayers(t *testing.T) {
	t.Parallel()
	defaults := Settings{Interval: 30 * time.Second, Fall: 5, Expect: []int{200}}
	reg := Settings{Path: "/", Expect: []int{403, 404}, Fall: 2}
	got := reg.WithDefaults(defaults.WithDefaults(DefaultSettings()))
	want := Settings{
		Path:         "/",
		Expect:       []int{403, 404},
		Interval:     30 * time.Second,
		FastInterval: DefaultFastInterval,
		Timeout:      DefaultTimeout,
		Rise:         DefaultRise,
		Fall:         2,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("layered settings:\n got %+v\nwant %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("layered settings do not validate: %v", err)
	}

	// The result must not share Expect with a layer, or a config that
	// reuses its defaults for every registry would see them change.
	got.Expect[0] = 599
	if reg.Expect[0] != 403 {
		t.Error("WithDefaults returned the registry's own Expect slice")
	}
	d := Settings{}.WithDefaults(defaults)
	d.Expect[0] = 599
	if defaults.Expect[0] != 200 {
		t.Error("WithDefaults returned the defaults' own Expect slice")
	}

	if !(Settings{}).WithDefaults(Settings{Disabled: true}).Disabled {
		t.Error("health_defaults' enabled: false was lost")
	}
	if err := DefaultSettings().Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := DefaultSettings()
	tests := []struct {
		name   string
		change func(*Settings)
		want   []string // every problem, in order
	}{
		{"defaults", func(*Settings) {}, nil},
		{"200ms interval", func(s *Settings) {
			s.Interval, s.FastInterval, s.Timeout = 200*time.Millisecond, 100*time.Millisecond, 150*time.Millisecond
		}, nil},
		{"path with a query", func(s *Settings) { s.Path = "/v2/?probe=1" }, nil},
		{"s3 bucket probe", func(s *Settings) { s.Path, s.Expect = "/", []int{403, 404} }, nil},
		{"disabled is still checked", func(s *Settings) { s.Disabled, s.Fall = true, 0 }, []string{"fall: must be at least 1, got 0"}},
		{"empty path", func(s *Settings) { s.Path = "" }, []string{"path: must not be empty"}},
		{"relative path", func(s *Settings) { s.Path = "v2/" }, []string{`path: must be an absolute path such as /v2/, got "v2/"`}},
		{"network path", func(s *Settings) { s.Path = "//evil.example/v2/" }, []string{`path: must be an absolute path such as /v2/, got "//evil.example/v2/"`}},
		{"fragment", func(s *Settings) { s.Path = "/v2/#x" }, []string{`path: must be a URL path with an optional query, got "/v2/#x"`}},
		{"space", func(s *Settings) { s.Path = "/v2/ x" }, []string{`path: must be a URL path with an optional query, got "/v2/ x"`}},
		{"no codes", func(s *Settings) { s.Expect = nil }, []string{"expect: must list at least one status code"}},
		{"bad codes", func(s *Settings) { s.Expect = []int{200, 99, 600} }, []string{
			"expect: 99 is not an HTTP status code (100-599)",
			"expect: 600 is not an HTTP status code (100-599)",
		}},
		{"interval below the floor", func(s *Settings) {
			s.Interval, s.FastInterval, s.Timeout = 50*time.Millisecond, 50*time.Millisecond, 10*time.Millisecond
		}, []string{
			"interval: must be at least 100ms (every replica probes every registry), got 50ms",
			"fast_interval: must be at least 100ms, got 50ms",
		}},
		{"fast interval longer than interval", func(s *Settings) { s.FastInterval = time.Minute }, []string{
			"fast_interval: must not be longer than interval (10s), got 1m0s",
		}},
		{"no timeout", func(s *Settings) { s.Timeout = 0 }, []string{"timeout: must be more than 0, got 0s"}},
		{"negative timeout", func(s *Settings) { s.Timeout = -time.Second }, []string{"timeout: must be more than 0, got -1s"}},
		{"timeout longer than interval", func(s *Settings) { s.Timeout = 11 * time.Second }, []string{
			"timeout: must not be longer than interval (10s), got 11s",
		}},
		{"rise and fall", func(s *Settings) { s.Rise, s.Fall = 0, -1 }, []string{
			"rise: must be at least 1, got 0",
			"fall: must be at least 1, got -1",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := ok
			s.Expect = append([]int(nil), ok.Expect...)
			tt.change(&s)
			err := s.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Validate() problems:\n got %q\nwant %q", got, tt.want)
			}
			// Each problem names its field for a config loader to locate.
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe *FieldError
					if !errors.As(e, &fe) || !strings.HasPrefix(e.Error(), fe.Field+": ") {
						t.Errorf("problem %q is not a *FieldError naming its field", e)
					}
				}
			}
		})
	}
}
