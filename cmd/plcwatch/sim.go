package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/plcwatch/plcwatch/sim/pcapgen"
)

func cmdSim(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "pcap" {
		fmt.Fprintln(stderr, "usage: plcwatch sim pcap -o FILE [flags]   (write a synthetic Modbus/TCP polling capture)")
		return 2
	}
	fs := flag.NewFlagSet("sim pcap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := pcapgen.DefaultPoll
	out := fs.String("o", "", "capture file to write")
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
	st := pcapgen.Poll(w, o)
	err = errors.Join(w.Flush(), f.Close())
	if err != nil {
		fmt.Fprintln(stderr, "plcwatch sim pcap:", err)
		return 1
	}
	fmt.Fprintf(stderr, "wrote %s: packets=%d requests=%d writes=%d\n", *out, st.Packets, st.Requests, st.Writes)
	return 0
}
