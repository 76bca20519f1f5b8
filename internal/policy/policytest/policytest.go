// Package policytest makes synthetic overrides at scale, for the engine's
// benchmarks and the load test, and measures what holding them costs.
package policytest

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strconv"
	"time"

	"github.com/reghost/reghost/internal/rules"
)

// Overrides makes n deterministic overrides spread over the address and
// AS number space: a quarter IPv4 /24s, a quarter IPv6 /48s, half ASNs,
// each sending its match to one of registries in turn. Some matches
// repeat, as they would in a real store; repeats chain and stay valid.
func Overrides(n int, registries []string) []rules.Override {
	rng := rand.New(rand.NewPCG(3, 4))
	out := make([]rules.Override, 0, n)
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		o := rules.Override{
			ID:         "o" + strconv.Itoa(i),
			Registries: []string{registries[i%len(registries)]},
			CreatedAt:  created,
			CreatedBy:  "policytest",
		}
		switch i % 4 {
		case 0:
			o.Match.CIDR = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(1 + rng.IntN(222)), byte(rng.IntN(256)), byte(rng.IntN(256)), 0}), 24)
		case 1:
			var a [16]byte
			a[0], a[1] = 0x20, byte(rng.IntN(16))
			for j := 2; j < 6; j++ {
				a[j] = byte(rng.IntN(256))
			}
			o.Match.CIDR = netip.PrefixFrom(netip.AddrFrom16(a), 48)
		default:
			o.Match.ASN = uint32(1 + rng.IntN(400_000))
		}
		out = append(out, o)
	}
	return out
}

// ReadWhileWriting runs read(i), for i = 0, 1, 2, … on each of two
// goroutines, while write(i) runs n times on this one with a collection
// after each, so that what a write replaced is freed while reads are
// running. It returns the first error of either.
func ReadWhileWriting(n int, read func(i int) error, write func(i int) error) error {
	stop := make(chan struct{})
	errs := make(chan error, 2)
	for w := range 2 {
		go func() {
			for i := w; ; i += 2 {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				if err := read(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
	for i := range n {
		if err = write(i); err != nil {
			break
		}
		runtime.GC()
	}
	close(stop)
	return errors.Join(err, <-errs, <-errs)
}
