package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// packetsOf reads a pcap file's packets.
func packetsOf(t *testing.T, path string) ([][]byte, []time.Time) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var data [][]byte
	var ts []time.Time
	for {
		b, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return data, ts
		}
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, b)
		ts = append(ts, ci.Timestamp)
	}
}

// TestReplayStdinStreams pipes a capture into replay --pcap - one packet
// at a time, as tcpdump -U -w - does, and holds the pipe open after the
// first request/response pair: the first event must come out while the
// writer is still writing, not at EOF. Both file formats (pcapng is read
// without seeking).
func TestReplayStdinStreams(t *testing.T) {
	data, ts := packetsOf(t, example)
	for _, format := range []string{"pcap", "pcapng"} {
		t.Run(format, func(t *testing.T) {
			inR, inW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			old := os.Stdin
			os.Stdin = inR
			t.Cleanup(func() { os.Stdin = old; inR.Close() })

			// The writer writes each packet in its own write call.
			var buf bytes.Buffer
			var write func(i int)
			flushTo := func() {
				if _, err := inW.Write(buf.Bytes()); err != nil {
					t.Error(err)
				}
				buf.Reset()
			}
			if format == "pcap" {
				w := pcapgo.NewWriter(&buf)
				if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
					t.Fatal(err)
				}
				write = func(i int) {
					if err := w.WritePacket(captureInfo(ts[i], data[i]), data[i]); err != nil {
						t.Fatal(err)
					}
					flushTo()
				}
			} else {
				w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
				if err != nil {
					t.Fatal(err)
				}
				write = func(i int) {
					if err := w.WritePacket(captureInfo(ts[i], data[i]), data[i]); err != nil {
						t.Fatal(err)
					}
					if err := w.Flush(); err != nil {
						t.Fatal(err)
					}
					flushTo()
				}
			}

			outR, outW := io.Pipe()
			var errOut bytes.Buffer
			done := make(chan int, 1)
			go func() {
				done <- run(context.Background(), []string{"replay", "--pcap", "-", "--events"}, outW, &errOut)
				outW.Close()
			}()
			lines := make(chan string, 100)
			go func() {
				sc := bufio.NewScanner(outR)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()

			// Packets until the first event is out; the pipe stays open.
			first := -1
			var got []string
			for i := range data {
				write(i)
				select {
				case l := <-lines:
					got = append(got, l)
					first = i
				case <-time.After(20 * time.Millisecond):
				}
				if first >= 0 {
					break
				}
			}
			if first < 0 {
				// Under load the decoder may lag: wait (generously) with the pipe still open.
				select {
				case l := <-lines:
					got = append(got, l)
				case <-time.After(60 * time.Second):
					t.Fatal("no event within 60 s of writing every packet, the pipe still open: replay waits for EOF")
				}
				first = len(data) - 1
			}
			for i := first + 1; i < len(data); i++ {
				write(i)
			}
			inW.Close()
			for l := range lines {
				got = append(got, l)
			}
			if code := <-done; code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			if len(got) != 24 {
				t.Errorf("%d events, want 24 as from the file", len(got))
			}
			if !strings.Contains(errOut.String(), "packets=100 ") {
				t.Errorf("summary: %s", errOut.String())
			}
		})
	}
}

func captureInfo(ts time.Time, b []byte) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}
}

// TestRulesTestStdin: rules test --pcap - decodes standard input through
// the same path as replay, and raises what the file gives.
func TestRulesTestStdin(t *testing.T) {
	const part1 = "../../testdata/pcaps/modbus/iti_modbus_test_data_part1.pcap"
	code, fromFile, errOut := plcwatch(t, "rules", "test", "--rules", "../../configs/rules", "--pcap", part1)
	if code != 0 || fromFile == "" {
		t.Fatalf("exit %d, %d bytes of alerts: %s", code, len(fromFile), errOut)
	}
	f, err := os.Open(part1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = old }()
	code, fromStdin, errOut := plcwatch(t, "rules", "test", "--rules", "../../configs/rules", "--pcap", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if fromStdin != fromFile {
		t.Errorf("alerts from standard input differ from the file's:\n%s\nvs\n%s", fromStdin, fromFile)
	}
}
