package opcua

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"

	"github.com/plcwatch/plcwatch"
	"github.com/plcwatch/plcwatch/collectors/capture/reassembly"
)

// Secure Conversation (OPC 10000-6 §6.7): OPN carries an asymmetric
// security header (policy URI, sender certificate, receiver thumbprint);
// MSG and CLO a symmetric one (channel id, token id). Then comes the
// sequence header (sequence number, request id) and the body — in clear
// text when the policy is None or the mode is Sign, encrypted with
// SignAndEncrypt. A Sign chunk ends with a signature whose length the
// policy fixes; OPN messages of any policy but None are encrypted
// asymmetrically, whatever the mode.

// open handles an OPN chunk.
func (c *Conn) open(dir reassembly.Dir, b []byte, m reassembly.Meta) {
	r := reader{b: b[hdrLen:]}
	chanID := r.u32()
	uri := r.bytes()
	cert := r.bytes()
	r.bytes() // receiver certificate thumbprint
	if !r.ok() || b[3] != 'F' {
		ev := c.scratch(m)
		ev.Op, ev.Service, ev.Channel = plcwatch.OpSession, "OpenSecureChannel", chanID
		ev.Absent &^= plcwatch.FieldChannel
		ev.Malformed = r.why
		if ev.Malformed == "" {
			ev.Malformed = errChunkType
		}
		ev.Orphan = dir == reassembly.ServerToClient
		c.send(ev)
		return
	}
	policy := c.d.policyName(uri)
	if policy == "None" {
		// Clear text: an ordinary service message, decoded as one.
		ch := c.channel(chanID)
		ch.policy, ch.sigLen, ch.opaque = policy, 0, false
		if ch.mode == "" {
			ch.mode = "None"
		}
		payload := b[hdrLen+r.off:]
		if len(payload) < 8 {
			c.chunkShort(dir, typOPN, ch, m)
			return
		}
		reqID := binary.LittleEndian.Uint32(payload[4:])
		c.message(dir, ch, typOPN, reqID, payload[8:], m, msgInfo{size: len(b)})
		return
	}
	// Encrypted: what the header shows, and the counts of the channel's
	// traffic since its previous OPN.
	if dir == reassembly.ClientToServer {
		p := c.newPending(m)
		p.kind = pendOpen
		p.ev.Op, p.ev.Service = plcwatch.OpSession, "OpenSecureChannel"
		p.ev.Channel, p.ev.SecurityPolicy = chanID, policy
		p.ev.Absent &^= plcwatch.FieldChannel
		p.ev.Thumbprint = thumbprint(cert)
		if chanID != 0 {
			ch := c.channel(chanID)
			p.ev.SecurityMode = ch.mode
			p.ev.Messages, p.ev.Bytes = ch.msgs, ch.bytes+uint64(len(b))
			ch.msgs, ch.bytes = 0, 0
		} else {
			p.ev.Bytes = uint64(len(b))
		}
		c.request(p)
		return
	}
	for i := range c.pending {
		p := &c.pending[i]
		if p.kind != pendOpen {
			continue
		}
		ch := c.channel(chanID)
		if ch.policy != policy {
			// A new channel, or one whose policy changed: learn again how
			// its bodies look.
			ch.mode, ch.opaque = "", false
		}
		ch.policy = policy
		ch.thumbprint = p.ev.Thumbprint
		ch.sigLen = -1
		if n, ok := policySig[policy]; ok {
			ch.sigLen = n
		}
		p.ev.Channel = chanID
		p.ev.Absent &^= plcwatch.FieldChannel
		p.ev.Bytes += uint64(len(b))
		c.answer(i, m)
		return
	}
	ev := c.scratch(m)
	ev.Op, ev.Service, ev.Orphan = plcwatch.OpSession, "OpenSecureChannel", true
	ev.Channel, ev.SecurityPolicy = chanID, policy
	ev.Absent &^= plcwatch.FieldChannel
	c.d.Stats.Orphans++
	c.send(ev)
}

// thumbprint is the SHA-1 of the first certificate of a DER chain, in
// lower-case hex: what OPC UA calls a certificate's thumbprint (OPC
// 10000-6 §6.7.2.3) and what Windows and UaExpert show.
func thumbprint(chain []byte) string {
	if len(chain) == 0 {
		return ""
	}
	cert := chain
	if n := derLen(chain); n > 0 && n <= len(chain) {
		cert = chain[:n]
	}
	sum := sha1.Sum(cert)
	return hex.EncodeToString(sum[:])
}

// derLen is the length of the DER element at the start of b, or 0.
func derLen(b []byte) int {
	if len(b) < 2 || b[0] != 0x30 {
		return 0
	}
	l := int(b[1])
	if l < 0x80 {
		return 2 + l
	}
	n := l & 0x7f
	if n == 0 || n > 4 || len(b) < 2+n {
		return 0
	}
	l = 0
	for _, c := range b[2 : 2+n] {
		l = l<<8 | int(c)
	}
	return 2 + n + l
}

// msgInfo is what the chunk layer knows about a complete message.
type msgInfo struct {
	size     int    // bytes of all its chunks, headers included
	chunks   int    // number of chunks
	problem  string // a limit it broke (errOversized, errTooLarge)
	cut      bool   // problem made plcwatch drop chunks: the body is not whole
	assembly bool   // it came in several chunks
}

// secureChunk handles a MSG or CLO chunk.
func (c *Conn) secureChunk(dir reassembly.Dir, typ uint32, b []byte, m reassembly.Meta) {
	chanID := binary.LittleEndian.Uint32(b[hdrLen:])
	ch := c.channel(chanID)
	if ch.opaque {
		c.d.Stats.Encrypted++
		ch.bytes += uint64(len(b))
		if b[3] != 'C' {
			ch.msgs++
		}
		if typ == typCLO {
			ev := c.scratch(m)
			c.channelSummary(ev, ch, "CloseSecureChannel")
			ev.Orphan = dir == reassembly.ServerToClient
			c.send(ev)
			ch.msgs, ch.bytes = 0, 0
		}
		return
	}
	payload := b[hdrLen+8:]
	if ch.sigLen > 0 {
		if len(payload) < 8+ch.sigLen {
			c.chunkShort(dir, typ, ch, m)
			return
		}
		payload = payload[:len(payload)-ch.sigLen]
	}
	if len(payload) < 8 {
		c.chunkShort(dir, typ, ch, m)
		return
	}
	reqID := binary.LittleEndian.Uint32(payload[4:])
	body := payload[8:]
	st := &c.dirs[dir]
	ai := -1
	for i := range st.asm {
		if st.asm[i].reqID == reqID && st.asm[i].channel == chanID {
			ai = i
			break
		}
	}
	switch b[3] {
	case 'F':
		if ai < 0 {
			info := msgInfo{size: len(b), chunks: 1}
			if lim := st.limit.chunk; lim != 0 && uint32(len(b)) > lim {
				info.problem = errOversized
			}
			c.message(dir, ch, typ, reqID, body, m, info)
			return
		}
		c.addChunk(st, ai, body, len(b))
		a := st.asm[ai]
		info := msgInfo{size: a.size, chunks: a.chunks, problem: a.tooBig, cut: a.tooBig != "", assembly: true}
		if a.tooBig == errTooLarge {
			c.d.Stats.TooLarge++
		}
		// The message's events take the packet that brought the last of
		// its bytes, which is not always the final chunk's when segments
		// came out of order.
		c.message(dir, ch, typ, reqID, a.buf, a.meta.Later(m), info)
		c.freeAssembly(st, ai)
	case 'C':
		if ai < 0 {
			if len(st.asm) >= 4 {
				// More messages in progress at once than any stack sends:
				// the oldest is given up.
				c.d.Stats.TooLarge++
				c.freeAssembly(st, 0)
			}
			st.asm = append(st.asm, assembly{reqID: reqID, channel: chanID})
			ai = len(st.asm) - 1
		}
		st.asm[ai].meta = st.asm[ai].meta.Later(m)
		c.addChunk(st, ai, body, len(b))
	case 'A':
		c.d.Stats.Aborted++
		if ai >= 0 {
			c.freeAssembly(st, ai)
		}
		c.abort(dir, ch, reqID, body, m)
	}
}

// addChunk appends a chunk's body to assembly i, within the negotiated
// limits (flagged when broken) and plcwatch's own (the rest dropped).
func (c *Conn) addChunk(st *dirState, i int, body []byte, size int) {
	a := &st.asm[i]
	a.chunks++
	a.size += size
	if a.tooBig != "" {
		return
	}
	// What Hello/Acknowledge negotiated bounds what is kept: the receiver
	// refuses a message beyond it (§7.1.2.3, BadTcpMessageTooLarge), so
	// its rest is not worth the memory. The event names the service from
	// the first chunk and says why the rest is missing.
	lim := st.limit
	if (lim.message != 0 && uint32(a.size) > lim.message) || (lim.chunks != 0 && uint32(a.chunks) > lim.chunks) {
		c.d.Stats.Oversized++
		a.tooBig = errOversized
		return
	}
	if a.size > c.d.cfg.MaxMessage || a.chunks > c.d.cfg.MaxChunks {
		a.tooBig = errTooLarge
		return
	}
	if a.buf == nil && st.spare != nil {
		a.buf, st.spare = st.spare[:0], nil
	}
	if len(a.buf)+len(body) > cap(a.buf) {
		grow := max(2*cap(a.buf), len(a.buf)+len(body), 4096)
		if !c.d.reserve(grow - cap(a.buf)) {
			a.tooBig = errTooLarge
			return
		}
		nb := make([]byte, len(a.buf), grow)
		copy(nb, a.buf)
		a.buf = nb
	}
	a.buf = append(a.buf, body...)
}

func (c *Conn) freeAssembly(st *dirState, i int) {
	// The buffer of a message of ordinary size is kept for the next one:
	// a client that polls with chunked responses reuses it.
	if buf := st.asm[i].buf; st.spare == nil && cap(buf) > 0 && cap(buf) <= spareMax {
		st.spare = buf[:0]
	} else {
		c.d.release(cap(buf))
	}
	copy(st.asm[i:], st.asm[i+1:])
	st.asm[len(st.asm)-1] = assembly{}
	st.asm = st.asm[:len(st.asm)-1]
}

// abort handles an abort chunk (§6.7.2.4): the sender gives up on a
// message, with a status code and a reason. A client's abort is reported
// on its own; a server's answers the request it aborts.
func (c *Conn) abort(dir reassembly.Dir, ch *channel, reqID uint32, body []byte, m reassembly.Meta) {
	r := reader{b: body}
	code := r.u32()
	reason := r.bytes()
	if dir == reassembly.ServerToClient {
		if i := c.findPending(reqID, ch.id); i >= 0 {
			p := &c.pending[i]
			c.setStatus(&p.ev, code)
			p.ev.Error = c.d.clip(reason, 512)
			if p.ev.Malformed == "" {
				p.ev.Malformed = errAborted
			}
			c.answer(i, m)
			return
		}
	}
	ev := c.scratch(m)
	setChannel(ev, ch)
	ev.Op, ev.RequestID = plcwatch.OpOther, reqID
	ev.Absent &^= plcwatch.FieldRequestID
	ev.Orphan = dir == reassembly.ServerToClient
	c.setStatus(ev, code)
	ev.Error = c.d.clip(reason, 512)
	ev.Malformed = errAborted
	c.send(ev)
}

// chunkShort reports a chunk too short for its own headers.
func (c *Conn) chunkShort(dir reassembly.Dir, typ uint32, ch *channel, m reassembly.Meta) {
	ev := c.scratch(m)
	setChannel(ev, ch)
	ev.Op = plcwatch.OpOther
	if typ == typOPN {
		ev.Op = plcwatch.OpSession
	}
	ev.Malformed = errChunkShort
	ev.Orphan = dir == reassembly.ServerToClient
	c.send(ev)
}

// dropped reports a chunk plcwatch will not keep (too large for its
// buffers) from what its first bytes tell: for a MSG whose body is in
// clear text, the service it carries.
func (c *Conn) dropped(dir reassembly.Dir, b []byte, m reassembly.Meta, why string) {
	ev := c.scratch(m)
	ev.Op = plcwatch.OpOther
	ev.Malformed = why
	ev.Orphan = dir == reassembly.ServerToClient
	typ := binary.LittleEndian.Uint32(b) & 0xffffff
	if (typ == typMSG || typ == typCLO) && len(b) >= hdrLen+16 {
		ch := c.channel(binary.LittleEndian.Uint32(b[hdrLen:]))
		setChannel(ev, ch)
		ev.RequestID = binary.LittleEndian.Uint32(b[hdrLen+12:])
		ev.Absent &^= plcwatch.FieldRequestID
		if !ch.opaque {
			r := reader{b: b[hdrLen+16:]}
			var tid nodeID
			r.nodeID(&tid, true)
			if mt, ok := c.lookup(&tid); ok && mt.svc != nil {
				ev.Service, ev.Op = mt.svc.reqName, mt.svc.op
				if mt.response {
					ev.Service = mt.svc.respName
				}
			}
		}
	}
	c.send(ev)
}

// channelSummary fills an event that reports an encrypted channel's
// traffic.
func (c *Conn) channelSummary(ev *plcwatch.Event, ch *channel, service string) {
	setChannel(ev, ch)
	ev.Op, ev.Service = plcwatch.OpSession, service
	ev.Thumbprint = ch.thumbprint
	ev.Messages, ev.Bytes = ch.msgs, ch.bytes
}
