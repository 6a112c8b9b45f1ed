package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/plcwatch/plcwatch/sim/modbussim"
	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

func cmdSim(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "modbus" {
		return cmdSimModbus(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "pcap" {
		fmt.Fprintln(stderr, "usage: plcwatch sim pcap -o FILE [-protocol modbus|opcua] [flags]   (write a synthetic polling capture)")
		fmt.Fprintln(stderr, "       plcwatch sim modbus [flags]         (serve simulated Modbus/TCP devices)")
		return 2
	}
	fs := flag.NewFlagSet("sim pcap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := pcapgen.DefaultPoll
	u := pcapgen.DefaultOPCUA
	out := fs.String("o", "", "capture file to write")
	protocol := fs.String("protocol", "modbus", "modbus (Modbus/TCP polling) or opcua (OPC UA Read/Publish polling with writes, calls and chunked responses)")
	fs.Float64Var(&u.Publish, "publish", u.Publish, "opcua: share of requests that are PublishRequests")
	fs.Float64Var(&u.Calls, "calls", u.Calls, "opcua: share of requests that are CallRequests")
	fs.Float64Var(&u.Chunked, "chunked", u.Chunked, "opcua: share of ReadResponses sent in several chunks")
	fs.IntVar(&u.Nodes, "nodes", u.Nodes, "opcua: nodes per ReadRequest")
	fs.IntVar(&o.Packets, "packets", o.Packets, "data segments to write")
	fs.IntVar(&o.Conns, "conns", o.Conns, "client-server connections")
	fs.Float64Var(&o.Writes, "writes", o.Writes, "share of requests that are writes")
	fs.Float64Var(&o.Split, "split", o.Split, "share of requests split over two segments")
	fs.Float64Var(&o.Coalesced, "coalesced", o.Coalesced, "share of rounds with 2-3 pipelined requests in one segment")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "random seed (the same seed writes the same file)")
	ng := fs.Bool("pcapng", false, "write pcapng instead of pcap")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *out == "" || o.Packets < 1 || o.Conns < 1 {
		fmt.Fprintln(stderr, "plcwatch sim pcap: -o FILE is required; -packets and -conns must be positive")
		return 2
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(stderr, "plcwatch sim pcap:", err)
		return 1
	}
	w, _ := pcapgen.NewWriter(f, pcapgen.Options{PCAPNG: *ng})
	var summary string
	switch *protocol {
	case "modbus":
		st := pcapgen.Poll(w, o)
		summary = fmt.Sprintf("packets=%d requests=%d writes=%d", st.Packets, st.Requests, st.Writes)
	case "opcua":
		u.Packets, u.Conns, u.Writes, u.Seed = o.Packets, o.Conns, o.Writes, o.Seed
		if !set(fs, "writes") {
			u.Writes = pcapgen.DefaultOPCUA.Writes
		}
		st := pcapgen.OPCUA(w, u)
		summary = fmt.Sprintf("packets=%d messages=%d requests=%d reads=%d publishes=%d writes=%d calls=%d chunked=%d",
			st.Packets, st.Messages, st.Requests, st.Reads, st.Publishes, st.Writes, st.Calls, st.Chunked)
	default:
		f.Close()
		fmt.Fprintf(stderr, "plcwatch sim pcap: -protocol %q: modbus or opcua\n", *protocol)
		return 2
	}
	err = errors.Join(w.Flush(), f.Close())
	if err != nil {
		fmt.Fprintln(stderr, "plcwatch sim pcap:", err)
		return 1
	}
	fmt.Fprintf(stderr, "wrote %s: %s\n", *out, summary)
	return 0
}

// set reports whether flag name was given on the command line.
func set(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// cmdSimModbus serves simulated Modbus/TCP devices on consecutive ports
// until interrupted, and can write the plcwatch configuration that polls
// them.
func cmdSimModbus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sim modbus", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:5020", "address of the first device; the others take the next ports")
	devices := fs.Int("devices", 1, "devices to serve")
	tags := fs.Int("tags", 10, "moving holding registers per device (0..tags-1), and tags per device in --config")
	tick := fs.Duration("tick", time.Second, "how often the values move")
	config := fs.String("config", "", "write a plcwatch config fragment (modbus: devices: ...) that polls these devices to this file")
	interval := fs.Duration("interval", time.Second, "poll interval written into --config")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	host, portText, err := net.SplitHostPort(*listen)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil || *devices < 1 || *tags < 1 || *tags > modbussim.Size || port+*devices > 65536 {
		fmt.Fprintln(stderr, "plcwatch sim modbus: --listen host:port, --devices and --tags (up to 4096) positive")
		return 2
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cfg strings.Builder
	cfg.WriteString("modbus:\n  devices:\n")
	var servers []*modbussim.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	for i := range *devices {
		addr := net.JoinHostPort(host, strconv.Itoa(port+i))
		img := &modbussim.Image{}
		s, err := modbussim.Serve(addr, img, nil)
		if err != nil {
			fmt.Fprintln(stderr, "plcwatch sim modbus:", err)
			return 1
		}
		servers = append(servers, s)
		go modbussim.Process(ctx, img, *tags, *tick, 2*float64(i))
		fmt.Fprintf(&cfg, "    - name: sim-%03d\n      address: %s\n      interval: %s\n      tags:\n", i, addr, *interval)
		for t := range *tags {
			fmt.Fprintf(&cfg, "        - {name: r%d, table: holding, address: %d, scale: 0.1}\n", t, t)
		}
	}
	if *config != "" {
		if err := os.WriteFile(*config, []byte(cfg.String()), 0o644); err != nil {
			fmt.Fprintln(stderr, "plcwatch sim modbus:", err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "serving %d simulated Modbus/TCP devices from %s (holding 0..%d move every %s; input registers count; coil 0 toggles); Ctrl-C stops\n",
		*devices, *listen, *tags-1, *tick)
	<-ctx.Done()
	return 0
}
