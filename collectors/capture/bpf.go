package capture

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Filter returns a classic BPF program, for the kernel, that accepts TCP
// segments to or from any of ports over Ethernet — IPv4 or IPv6, untagged or
// inside one 802.1Q or 802.1ad tag — and drops everything else before it is
// copied to user space. Accepted packets are cut to snaplen. IPv4 fragments
// after the first are dropped (they carry no TCP header); IPv6 extension
// headers are not walked, so TCP behind them is not seen.
//
// Assembled with golang.org/x/net/bpf: no libpcap, no cgo.
func Filter(ports []uint16, snaplen int) ([]bpf.RawInstruction, error) {
	if len(ports) == 0 {
		return nil, fmt.Errorf("bpf: no ports")
	}
	if len(ports) > maxFilterPorts {
		return nil, fmt.Errorf("bpf: %d ports, at most %d", len(ports), maxFilterPorts)
	}
	var p prog
	// Ethernet: the EtherType, or a VLAN tag and the EtherType after it.
	p.add(bpf.LoadAbsolute{Off: 12, Size: 2})
	p.jeq(0x8100, "vlan", "")
	p.jeq(0x88a8, "vlan", "")
	p.jeq(0x0800, "ip4@14", "")
	p.jeq(0x86dd, "ip6@14", "")
	p.add(bpf.RetConstant{Val: 0})
	p.label("vlan")
	p.add(bpf.LoadAbsolute{Off: 16, Size: 2})
	p.jeq(0x0800, "ip4@18", "")
	p.jeq(0x86dd, "ip6@18", "")
	p.add(bpf.RetConstant{Val: 0})
	for _, off := range []uint32{14, 18} {
		// IPv4: protocol TCP, not a later fragment; X = header length.
		reject := fmt.Sprintf("reject4@%d", off)
		p.label(fmt.Sprintf("ip4@%d", off))
		p.add(bpf.LoadAbsolute{Off: off + 9, Size: 1})
		p.jeq(6, "", reject)
		p.add(bpf.LoadAbsolute{Off: off + 6, Size: 2})
		p.jset(0x1fff, reject, "")
		p.add(bpf.LoadMemShift{Off: off})
		p.ports(ports, reject, bpf.LoadIndirect{Off: off, Size: 2}, bpf.LoadIndirect{Off: off + 2, Size: 2})
		// IPv6: next header TCP, ports right after the fixed header.
		reject = fmt.Sprintf("reject6@%d", off)
		p.label(fmt.Sprintf("ip6@%d", off))
		p.add(bpf.LoadAbsolute{Off: off + 6, Size: 1})
		p.jeq(6, "", reject)
		p.ports(ports, reject, bpf.LoadAbsolute{Off: off + 40, Size: 2}, bpf.LoadAbsolute{Off: off + 42, Size: 2})
	}
	return p.assemble(uint32(snaplen))
}

// prog is a tiny assembler with forward labels: classic BPF jumps are
// relative, forward only, and at most 255 instructions.
type prog struct {
	ins    []bpf.Instruction
	jumps  []jump
	labels map[string]int
}

type jump struct {
	at          int
	true, false string // label names; "" falls through
}

func (p *prog) add(i bpf.Instruction) { p.ins = append(p.ins, i) }

func (p *prog) label(name string) {
	if p.labels == nil {
		p.labels = map[string]int{}
	}
	p.labels[name] = len(p.ins)
}

func (p *prog) jeq(v uint32, t, f string) {
	p.jumps = append(p.jumps, jump{len(p.ins), t, f})
	p.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: v})
}

func (p *prog) jset(v uint32, t, f string) {
	p.jumps = append(p.jumps, jump{len(p.ins), t, f})
	p.add(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: v})
}

// ports accepts when the port loaded by src or by dst is one of ports. Each
// block ends with its own reject and accept so that jumps stay short.
func (p *prog) ports(ports []uint16, reject string, src, dst bpf.Instruction) {
	accept := fmt.Sprintf("accept%d", len(p.ins))
	for _, load := range []bpf.Instruction{src, dst} {
		p.add(load)
		for _, port := range ports {
			p.jeq(uint32(port), accept, "")
		}
	}
	p.label(reject)
	p.add(bpf.RetConstant{Val: 0})
	p.label(accept)
	p.add(bpf.RetConstant{Val: ^uint32(0)}) // patched to snaplen in assemble
}

func (p *prog) assemble(snaplen uint32) ([]bpf.RawInstruction, error) {
	for i, in := range p.ins {
		if r, ok := in.(bpf.RetConstant); ok && r.Val == ^uint32(0) {
			p.ins[i] = bpf.RetConstant{Val: snaplen}
		}
	}
	skip := func(from int, name string) (uint8, error) {
		if name == "" {
			return 0, nil
		}
		to, ok := p.labels[name]
		if !ok {
			return 0, fmt.Errorf("bpf: no label %q", name)
		}
		d := to - from - 1
		if d < 0 || d > 255 {
			return 0, fmt.Errorf("bpf: jump to %q out of range (%d)", name, d)
		}
		return uint8(d), nil
	}
	for _, j := range p.jumps {
		in := p.ins[j.at].(bpf.JumpIf)
		var err error
		if in.SkipTrue, err = skip(j.at, j.true); err != nil {
			return nil, err
		}
		if in.SkipFalse, err = skip(j.at, j.false); err != nil {
			return nil, err
		}
		p.ins[j.at] = in
	}
	return bpf.Assemble(p.ins)
}
