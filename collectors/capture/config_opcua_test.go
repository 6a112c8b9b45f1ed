package capture

import (
	"strings"
	"testing"
)

func TestOPCUAPortsConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modbus []uint16
		opcua  []uint16
		want   string // "" valid; else a substring of the error
	}{
		{"default", nil, nil, ""},
		{"non-standard", []uint16{502}, []uint16{4840, 48010, 53530}, ""},
		{"port 0", nil, []uint16{0}, "opcua_ports[0]: port 0 is not a port"},
		{"twice", nil, []uint16{4840, 4840}, "opcua_ports[1]: port 4840 listed twice"},
		{"both protocols", []uint16{502, 4840}, []uint16{4840}, "opcua_ports[0]: port 4840 is in modbus_ports too"},
		{"too many", []uint16{502}, seq(1000, 32), "33 ports in modbus_ports and opcua_ports together, at most 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{ModbusPorts: tc.modbus, OPCUAPorts: tc.opcua}
			c.Defaults()
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if tc.want == "" && tc.opcua == nil && (len(c.OPCUAPorts) != 1 || c.OPCUAPorts[0] != 4840) {
				t.Errorf("default OPC UA ports %v, want [4840]", c.OPCUAPorts)
			}
		})
	}
}

func seq(from uint16, n int) []uint16 {
	out := make([]uint16, n)
	for i := range out {
		out[i] = from + uint16(i)
	}
	return out
}
