package opcua

import (
	"encoding/base64"
	"encoding/binary"
	"strconv"
)

// appendNodeID appends the text form of a NodeId (OPC 10000-6 §5.3.1.10)
// as gopcua's NodeID.String writes it, so that both readers of a message
// agree: "i=85", "ns=1;s=the.answer", "ns=2;g=09087E75-8E5E-499B-954F-
// F2A9603DB28A" (upper case), "ns=1;b=<base64>". An ExpandedNodeId adds
// the standard prefixes: "svr=1;" for a server index and "nsu=<uri>;"
// in place of "ns=" when the namespace is named by URI.
func appendNodeID(b []byte, n *nodeID) []byte {
	if n.hasSrv {
		b = append(b, "svr="...)
		b = strconv.AppendUint(b, uint64(n.server), 10)
		b = append(b, ';')
	}
	switch {
	case n.nsURI != nil:
		b = append(b, "nsu="...)
		b = append(b, n.nsURI...)
		b = append(b, ';')
	case n.ns != 0:
		b = append(b, "ns="...)
		b = strconv.AppendUint(b, uint64(n.ns), 10)
		b = append(b, ';')
	}
	switch n.kind {
	case nodeTwoByte, nodeFourByte, nodeNumeric:
		b = append(b, "i="...)
		b = strconv.AppendUint(b, uint64(n.num), 10)
	case nodeString:
		b = append(b, "s="...)
		b = append(b, n.id...)
	case nodeGUID:
		b = append(b, "g="...)
		b = appendGUID(b, n.id)
	case nodeByteString:
		b = append(b, "b="...)
		b = base64.StdEncoding.AppendEncode(b, n.id)
	}
	return b
}

// appendGUID formats the 16 bytes of an encoded Guid (§5.2.2.6: Data1 to
// Data3 little-endian, Data4 as bytes) as gopcua's GUID.String does.
func appendGUID(b []byte, g []byte) []byte {
	const hex = "0123456789ABCDEF"
	if len(g) != 16 {
		return b
	}
	put := func(v uint64, digits int) {
		for i := digits - 1; i >= 0; i-- {
			b = append(b, hex[v>>(4*uint(i))&0xf])
		}
	}
	put(uint64(binary.LittleEndian.Uint32(g)), 8)
	b = append(b, '-')
	put(uint64(binary.LittleEndian.Uint16(g[4:])), 4)
	b = append(b, '-')
	put(uint64(binary.LittleEndian.Uint16(g[6:])), 4)
	b = append(b, '-')
	for _, c := range g[8:10] {
		b = append(b, hex[c>>4], hex[c&0xf])
	}
	b = append(b, '-')
	for _, c := range g[10:] {
		b = append(b, hex[c>>4], hex[c&0xf])
	}
	return b
}

// interner keeps the text of the NodeIds a capture names, keyed by their
// encoding: a polling client reads the same nodes over and over, so after
// the first poll every node's text is a map lookup that does not allocate.
// It is bounded: when full it starts over, so a client that names a
// million distinct nodes costs allocations, never memory.
type interner struct {
	m    map[string]string // by NodeId encoding
	strs map[string]string // plain strings (index ranges)
	max  int
	buf  []byte
}

func newInterner(max int) *interner {
	return &interner{m: make(map[string]string), strs: make(map[string]string), max: max}
}

// str returns b as a string, from the table when it was seen before.
func (in *interner) str(b []byte) string {
	if s, ok := in.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in.strs) >= in.max {
		clear(in.strs)
	}
	in.strs[s] = s
	return s
}

// text returns the text form of n.
func (in *interner) text(n *nodeID) string {
	if n.raw == nil {
		return ""
	}
	if s, ok := in.m[string(n.raw)]; ok {
		return s
	}
	in.buf = appendNodeID(in.buf[:0], n)
	s := string(in.buf)
	if len(in.m) >= in.max {
		clear(in.m)
	}
	in.m[string(n.raw)] = s
	return s
}
