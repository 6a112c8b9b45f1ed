package spool

import (
	"strconv"
	"strings"
)

// span is an inclusive range of sequence numbers.
type span struct{ a, b uint64 }

// spans is a sorted list of disjoint, non-adjacent spans.
type spans []span

// add adds [a, b] and returns how many of its numbers were not in the list.
func (ss *spans) add(a, b uint64) uint64 {
	if a > b {
		return 0
	}
	added := b - a + 1
	out := (*ss)[:0:0]
	placed := false
	for _, x := range *ss {
		switch {
		case x.b+1 < a: // before, not touching
			out = append(out, x)
		case b+1 < x.a: // after, not touching
			if !placed {
				out = append(out, span{a, b})
				placed = true
			}
			out = append(out, x)
		default: // overlaps or touches: merge
			lo, hi := max(a, x.a), min(b, x.b)
			if lo <= hi {
				added -= hi - lo + 1
			}
			a, b = min(a, x.a), max(b, x.b)
		}
	}
	if !placed {
		out = append(out, span{a, b})
	}
	*ss = out
	return added
}

// count returns how many numbers of [a, b] are in the list.
func (ss spans) count(a, b uint64) uint64 {
	var n uint64
	for _, x := range ss {
		lo, hi := max(a, x.a), min(b, x.b)
		if lo <= hi {
			n += hi - lo + 1
		}
	}
	return n
}

// prune forgets the numbers up to and including upTo.
func (ss *spans) prune(upTo uint64) {
	out := (*ss)[:0]
	for _, x := range *ss {
		if x.b <= upTo {
			continue
		}
		x.a = max(x.a, upTo+1)
		out = append(out, x)
	}
	*ss = out
}

// String lists the spans for a log line: "12-15,20", at most 20 of them.
func (ss spans) String() string {
	var sb strings.Builder
	for i, x := range ss {
		if i == 20 {
			sb.WriteString(",...")
			break
		}
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatUint(x.a, 10))
		if x.b != x.a {
			sb.WriteByte('-')
			sb.WriteString(strconv.FormatUint(x.b, 10))
		}
	}
	return sb.String()
}

func (ss spans) total() uint64 {
	var n uint64
	for _, x := range ss {
		n += x.b - x.a + 1
	}
	return n
}
