//go:build !linux

package iprange

func makeEnts(n int) []uint64 { return make([]uint64, n) }

func adviseHuge([]uint64) {}
