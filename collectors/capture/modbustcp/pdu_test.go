package modbustcp

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/plcwatch/plcwatch"
)

func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// summary renders the fields a PDU test checks.
func summary(ev *plcwatch.Event) string {
	s := fmt.Sprintf("fc=%d op=%s", ev.Function, ev.Op)
	if ev.HasSub {
		s += fmt.Sprintf(" sub=%d", ev.SubFunction)
	}
	if ev.Table != plcwatch.TableNone {
		s += fmt.Sprintf(" %s@%d+%d", ev.Table, ev.Address, ev.Count)
	}
	if ev.Table == plcwatch.TableFile {
		s += fmt.Sprintf(" file=%d", ev.File)
	}
	if ev.Function == 23 {
		s += fmt.Sprintf(" read@%d+%d", ev.ReadAddress, ev.ReadCount)
	}
	if ev.Function == 22 {
		s += fmt.Sprintf(" and=%#x or=%#x", ev.AndMask, ev.OrMask)
	}
	if ev.Values.Kind() != plcwatch.NoValues {
		s += fmt.Sprintf(" values=%v", ev.Values.Ints(nil))
	}
	if ev.Response.Kind() != plcwatch.NoValues {
		s += fmt.Sprintf(" resp=%v", ev.Response.Ints(nil))
	}
	for _, o := range ev.Objects {
		s += fmt.Sprintf(" obj%d=%q", o.ID, o.Value)
	}
	if ev.Exception != 0 {
		s += fmt.Sprintf(" exc=%d", ev.Exception)
	}
	if ev.Malformed != "" {
		s += " malformed=" + ev.Malformed
	}
	return s
}

func TestDecodeRequestAndResponse(t *testing.T) {
	tests := []struct {
		name      string
		req, resp string // PDUs in hex; resp may be empty
		want      string
	}{
		// Reads.
		{"read coils", "01 0013 0013", "01 03 cd6b05", "fc=1 op=read coil@19+19 resp=[1 0 1 1 0 0 1 1 1 1 0 1 0 1 1 0 1 0 1]"},
		{"read discrete inputs", "02 00c4 0016", "02 03 acdb35", "fc=2 op=read discrete@196+22 resp=[0 0 1 1 0 1 0 1 1 1 0 1 1 0 1 1 1 0 1 0 1 1]"},
		{"read holding registers", "03 006b 0003", "03 06 022b 0000 0064", "fc=3 op=read holding@107+3 resp=[555 0 100]"},
		{"read input registers", "04 0008 0001", "04 02 000a", "fc=4 op=read input@8+1 resp=[10]"},
		{"read holding: 125 is the most", "03 0000 007d", "", "fc=3 op=read holding@0+125"},
		{"read holding: 126 is too many", "03 0000 007e", "", "fc=3 op=read holding@0+126 malformed=" + IllegalQuantity},
		{"read coils: 0 is illegal", "01 0000 0000", "", "fc=1 op=read coil@0+0 malformed=" + IllegalQuantity},
		{"read coils: 2000 is the most", "01 0000 07d0", "", "fc=1 op=read coil@0+2000"},
		{"read: truncated", "03 00", "", "fc=3 op=read holding@0+0 malformed=" + MissingAddress},
		{"read: truncated in the quantity", "03 0010 00", "", "fc=3 op=read holding@16+0 malformed=" + MissingQuantity},
		{"read: trailing bytes", "03 0001 0001 00", "", "fc=3 op=read holding@1+1 malformed=" + TrailingBytes},
		{"response byte count disagrees with quantity", "03 0000 0002", "03 02 0001", "fc=3 op=read holding@0+2 resp=[1] malformed=" + RespByteCountQty},
		{"response cut short", "03 0000 0002", "03 04 0001", "fc=3 op=read holding@0+2 resp=[1] malformed=" + RespValuesCutShort},
		{"response byte count disagrees with length", "03 0000 0001", "03 02 0001 00", "fc=3 op=read holding@0+1 resp=[1] malformed=" + RespByteCountLength},
		// Writes.
		{"write single coil on", "05 00ac ff00", "05 00ac ff00", "fc=5 op=write coil@172+1 values=[1]"},
		{"write single coil off", "05 00ac 0000", "05 00ac 0000", "fc=5 op=write coil@172+1 values=[0]"},
		{"write single coil: illegal value", "05 00ac 1234", "85 03", "fc=5 op=write coil@172+1 values=[0] exc=3 malformed=" + IllegalCoilValue},
		{"write single register", "06 0001 0003", "06 0001 0003", "fc=6 op=write holding@1+1 values=[3]"},
		{"write multiple coils", "0f 0013 000a 02 cd01", "0f 0013 000a", "fc=15 op=write coil@19+10 values=[1 0 1 1 0 0 1 1 1 0]"},
		{"write multiple coils: byte count disagrees", "0f 0013 000a 01 cd", "", "fc=15 op=write coil@19+10 values=[1 0 1 1 0 0 1 1] malformed=" + ByteCountQuantity},
		{"write multiple coils: 1969 is too many", "0f 0000 07b1 f7" + strings.Repeat("00", 247), "", "fc=15 op=write coil@0+1969 values=" + zeros(1969) + " malformed=" + IllegalQuantity},
		{"write multiple registers", "10 0001 0002 04 000a 0102", "10 0001 0002", "fc=16 op=write holding@1+2 values=[10 258]"},
		{"write multiple registers: short data", "10 0001 0002 04 000a", "", "fc=16 op=write holding@1+2 values=[10] malformed=" + ValuesCutShort},
		{"write multiple registers: 124 is too many", "10 0000 007c f8", "", "fc=16 op=write holding@0+124 values=[] malformed=" + IllegalQuantity},
		{"mask write register", "16 0004 00f2 0025", "16 0004 00f2 0025", "fc=22 op=write holding@4+1 and=0xf2 or=0x25"},
		{"read/write multiple registers", "17 0003 0006 000e 0003 06 00ff 00ff 00ff", "17 0c 00fe 0acd 0001 0003 000d 00ff",
			"fc=23 op=write holding@14+3 read@3+6 values=[255 255 255] resp=[254 2765 1 3 13 255]"},
		{"read/write: truncated after read part", "17 0001 0002", "", "fc=23 op=write holding@0+0 read@1+2 malformed=" + MissingWriteAddress},
		{"read fifo queue", "18 04de", "18 0006 0002 01b8 1284", "fc=24 op=read holding@1246+2 resp=[440 4740]"},
		{"read file record", "14 0e 06 0004 0001 0002 06 0003 0009 0002", "14 0c 05 06 0df8 0020 05 06 33cd 0040",
			"fc=20 op=read file@1+2 file=4 resp=[3576 32]"},
		{"read file record: bad reference type", "14 07 05 0004 0001 0002", "", "fc=20 op=read file@1+2 file=4 malformed=" + BadReferenceType},
		{"write file record", "15 0d 06 0004 0007 0003 06af 04be 100d", "15 0d 06 0004 0007 0003 06af 04be 100d",
			"fc=21 op=write file@7+3 file=4 values=[1711 1214 4109]"},
		// Diagnostics.
		{"read exception status", "07", "07 6d", "fc=7 op=diagnostic resp=[109]"},
		{"diagnostics: return query data", "08 0000 a537", "08 0000 a537", "fc=8 op=diagnostic sub=0 values=[42295] resp=[42295]"},
		{"diagnostics: restart communications", "08 0001 ff00", "08 0001 ff00", "fc=8 op=diagnostic sub=1 values=[65280] resp=[65280]"},
		{"diagnostics: force listen only mode", "08 0004 0000", "", "fc=8 op=diagnostic sub=4 values=[0]"},
		{"diagnostics: one word is all sub-function 4 takes", "08 0004 0000 0000", "", "fc=8 op=diagnostic sub=4 values=[0 0] malformed=" + TrailingBytes},
		{"diagnostics: return query data echoes any number", "08 0000 0001 0002 0003", "", "fc=8 op=diagnostic sub=0 values=[1 2 3]"},
		{"get comm event counter", "0b", "0b ffff 0108", "fc=11 op=diagnostic resp=[65535 264]"},
		{"get comm event log", "0c", "0c 08 0000 0108 0121 2000", "fc=12 op=diagnostic resp=[0 0 1 8 1 33 32 0]"},
		{"read exception status: trailing bytes", "07 00", "", "fc=7 op=diagnostic malformed=" + TrailingBytes},
		// Identification.
		{"report server id", "11", "11 03 42 ff 00", "fc=17 op=identify resp=[66 255 0]"},
		{"read device identification", "2b 0e 01 00", "2b 0e 01 01 00 00 03 00 07 436f6d70616e79 01 07 50726f64756374 02 04 56322e31",
			`fc=43 op=identify sub=14 values=[1 0] obj0="Company" obj1="Product" obj2="V2.1"`},
		{"read device identification: objects overrun", "2b 0e 01 00", "2b 0e 01 01 00 00 01 00 08 4163",
			"fc=43 op=identify sub=14 values=[1 0] malformed=" + RespDeviceIDObjects},
		{"read device identification: bad code", "2b 0e 05 00", "", "fc=43 op=identify sub=14 values=[5 0] malformed=" + BadDeviceIDCode},
		{"CANopen general reference", "2b 0d 0102", "2b 0d 0304", "fc=43 op=other sub=13 values=[1 2] resp=[3 4]"},
		// Exceptions and the rest.
		{"exception response", "01 0000 0001", "81 02", "fc=1 op=read coil@0+1 exc=2"},
		{"exception response without its code", "10 0064 0001 02 0007", "90", "fc=144 op=write holding@100+1 values=[7] malformed=" + RespExceptionNoCode},
		{"exception response with code 0", "06 0064 0007", "86 00", "fc=134 op=write holding@100+1 values=[7] malformed=" + RespExceptionZero},
		{"exception response: trailing bytes", "06 0064 0007", "86 02 00", "fc=6 op=write holding@100+1 values=[7] exc=2 malformed=" + RespTrailingBytes},
		{"gateway target failed to respond", "03 0000 0001", "83 0b", "fc=3 op=read holding@0+1 exc=11"},
		{"user-defined function code", "41 deadbeef", "41 00", "fc=65 op=other values=[222 173 190 239] resp=[0]"},
		{"UMAS", "5a 00 02", "5a 00 fe", "fc=90 op=other values=[0 2] resp=[0 254]"},
		{"reserved function code", "09 01", "89 01", "fc=9 op=other values=[1] exc=1"},
		{"function code 0", "00", "80 01", "fc=0 op=other values=[] exc=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ev plcwatch.Event
			DecodeRequest(&ev, h(tc.req))
			if tc.resp != "" {
				DecodeResponse(&ev, h(tc.resp))
			}
			if got := summary(&ev); got != tc.want {
				t.Errorf("\n got  %s\n want %s", got, tc.want)
			}
		})
	}
}

func zeros(n int) string {
	return fmt.Sprint(make([]int, min(n, 8*plcwatch.MaxValueBytes)))
}

func TestFunctionNames(t *testing.T) {
	for fc := 0; fc < 128; fc++ {
		name := FunctionName(uint8(fc))
		back, ok := ParseFunction(name)
		if !ok || int(back) != fc {
			t.Errorf("fc %d: name %q parses back to %d, %v", fc, name, back, ok)
		}
	}
	for _, tc := range []struct {
		in   string
		want uint8
	}{{"16", 16}, {"write_multiple_registers", 16}, {"Write_Single_Coil", 5}, {"user_defined_65", 65}, {"fc_9", 9}} {
		if got, ok := ParseFunction(tc.in); !ok || got != tc.want {
			t.Errorf("ParseFunction(%q) = %d, %v; want %d", tc.in, got, ok, tc.want)
		}
	}
	if _, ok := ParseFunction("format_c"); ok {
		t.Error("ParseFunction accepted a name that is no function")
	}
}
