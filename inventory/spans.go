package inventory

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// span is an inclusive range of protocol addresses.
type span struct{ lo, hi uint16 }

// spans is a sorted set of disjoint, non-adjacent ranges, at most maxSpans
// of them: beyond, the two closest are merged (the gap between them
// counts as touched), so that a sweep costs a bounded memory.
type spans struct {
	s      []span
	recent [8]span // ranges added lately: a poller reads the same few ranges again and again
	next   uint8
}

const (
	spanSame = iota
	spanAdded
	spanMerged // added, but a gap was filled to stay within maxSpans
)

// add puts lo-hi in the set.
func (s *spans) add(lo, hi uint16) int {
	r := span{lo, hi}
	if len(s.s) > 0 {
		for _, x := range s.recent {
			if x == r {
				return spanSame
			}
		}
	}
	s.recent[s.next&7] = r
	s.next++
	i, _ := slices.BinarySearchFunc(s.s, lo, func(a span, v uint16) int { return int(a.lo) - int(v) })
	// Already covered by the span before or at i?
	if i > 0 && s.s[i-1].lo <= lo && s.s[i-1].hi >= hi {
		return spanSame
	}
	if i < len(s.s) && s.s[i].lo == lo && s.s[i].hi >= hi {
		return spanSame
	}
	s.s = slices.Insert(s.s, i, span{lo, hi})
	// Merge with neighbours that overlap or touch.
	if i > 0 && int(s.s[i-1].hi)+1 >= int(s.s[i].lo) {
		s.s[i-1].hi = max(s.s[i-1].hi, s.s[i].hi)
		s.s = slices.Delete(s.s, i, i+1)
		i--
	}
	for i+1 < len(s.s) && int(s.s[i].hi)+1 >= int(s.s[i+1].lo) {
		s.s[i].hi = max(s.s[i].hi, s.s[i+1].hi)
		s.s = slices.Delete(s.s, i+1, i+2)
	}
	if len(s.s) <= maxSpans {
		return spanAdded
	}
	best := 0
	for j := 1; j+1 < len(s.s); j++ {
		if int(s.s[j+1].lo)-int(s.s[j].hi) < int(s.s[best+1].lo)-int(s.s[best].hi) {
			best = j
		}
	}
	s.s[best].hi = s.s[best+1].hi
	s.s = slices.Delete(s.s, best+1, best+2)
	return spanMerged
}

// appendText writes the set as rule files write ranges: "0-9,20,30-31".
func (s *spans) appendText(b []byte) []byte {
	for i, r := range s.s {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(r.lo), 10)
		if r.hi != r.lo {
			b = append(b, '-')
			b = strconv.AppendUint(b, uint64(r.hi), 10)
		}
	}
	return b
}

// parseSpans reads what appendText wrote.
func parseSpans(text string) (spans, error) {
	var s spans
	if text == "" {
		return s, nil
	}
	for _, part := range strings.Split(text, ",") {
		lo, hi, ok := strings.Cut(part, "-")
		if !ok {
			hi = lo
		}
		l, err1 := strconv.ParseUint(lo, 10, 16)
		h, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 != nil || err2 != nil || h < l {
			return s, fmt.Errorf("address range %q: want N or N-M, 0-65535", part)
		}
		s.add(uint16(l), uint16(h))
	}
	return s, nil
}
