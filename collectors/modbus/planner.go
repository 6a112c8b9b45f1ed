package modbus

import (
	"cmp"
	"slices"

	"github.com/plcwatch/plcwatch"
)

// request is one read: a contiguous range of one table of one unit, and the
// tags it serves.
type request struct {
	unit    uint8
	table   plcwatch.Table
	address uint16
	count   uint16
	tags    []int // indexes into the device's specs, in address order

	ui      int  // the poller's index of its unit
	failed  bool // got no answer last time: read after the others
	noSplit bool // refused with exception 2 or 3 as a whole and in every part: kept whole
}

// limits bound the requests a plan may make.
type limits struct {
	maxRegisters int // per request
	maxBits      int
	maxGap       int  // unread registers (bits) allowed between two tags merged into one request
	onePerTag    bool // a request for every tag (a device workaround)
}

// plan merges tags into the fewest requests the limits allow. Tags of one
// unit and table are sorted by address and swept once: a tag joins the open
// request while the request stays within the size limit and the tag starts
// no more than maxGap after what the request already covers; otherwise it
// opens the next request. Sweeping in address order is optimal (the tests
// compare it with an exhaustive search): any request that serves the tag
// that closed the open one must start at or after that tag's address, so
// the open request could not have served fewer tags in any plan.
func plan(specs []spec, lim limits) []request {
	idx := make([]int, len(specs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		sa, sb := &specs[a], &specs[b]
		return cmp.Or(cmp.Compare(sa.unit, sb.unit), cmp.Compare(sa.table, sb.table),
			cmp.Compare(sa.address, sb.address), cmp.Compare(sb.count, sa.count))
	})
	var out []request
	var cur *request
	end := 0 // one past the last register the open request covers
	for _, i := range idx {
		s := &specs[i]
		start, stop := int(s.address), int(s.address)+int(s.count)
		limit := lim.maxRegisters
		if s.table == plcwatch.TableCoil || s.table == plcwatch.TableDiscrete {
			limit = lim.maxBits
		}
		if cur != nil && !lim.onePerTag && cur.unit == s.unit && cur.table == s.table &&
			start-end <= lim.maxGap && max(end, stop)-int(cur.address) <= limit {
			end = max(end, stop)
			cur.count = uint16(end - int(cur.address))
			cur.tags = append(cur.tags, i)
			continue
		}
		out = append(out, request{unit: s.unit, table: s.table, address: s.address, count: s.count, tags: []int{i}})
		cur = &out[len(out)-1]
		end = stop
	}
	return out
}
