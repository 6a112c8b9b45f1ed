package actors

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/plcwatch/plcwatch/sim/plant"
	"github.com/plcwatch/plcwatch/sim/scenario"
)

// Modbus function codes (Modbus Application Protocol v1.1b3, §6).
const (
	ReadCoils             = 1
	ReadDiscreteInputs    = 2
	ReadHoldingRegisters  = 3
	ReadInputRegisters    = 4
	WriteSingleCoil       = 5
	WriteSingleRegister   = 6
	Diagnostics           = 8
	EncapsulatedInterface = 43 // with MEI type 14: Read Device Identification
	ForceListenOnlyMode   = 4  // Diagnostics sub-function
	RestartCommunications = 1  // Diagnostics sub-function
	ReadDeviceID          = 14 // MEI type
	ReadDeviceIDBasic     = 1
	coilOn                = 0xFF00
)

// Read reads one point (FC 1, 2, 3 or 4 by its table) and returns its
// engineering value.
func Read(ctx context.Context, c *Client, unit uint8, pt *scenario.Point) (float64, error) {
	fc := map[string]byte{"coil": ReadCoils, "discrete": ReadDiscreteInputs, "input": ReadInputRegisters, "holding": ReadHoldingRegisters}[pt.Table]
	resp, err := c.Do(ctx, unit, be(fc, uint16(pt.Address), 1))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", pt.Name, err)
	}
	if len(resp) < 3 {
		return 0, fmt.Errorf("read %s: answer of %d bytes", pt.Name, len(resp))
	}
	if pt.IsCoil() {
		return float64(resp[2] & 1), nil
	}
	if len(resp) < 4 {
		return 0, fmt.Errorf("read %s: answer of %d bytes", pt.Name, len(resp))
	}
	return float64(uint16(resp[2])<<8|uint16(resp[3])) * pt.Scale, nil
}

// Write writes engineering value v to a coil (FC 5) or holding register
// (FC 6).
func Write(ctx context.Context, c *Client, unit uint8, pt *scenario.Point, v float64) error {
	var pdu []byte
	if pt.Table == "coil" {
		on := uint16(0)
		if v >= 0.5 {
			on = coilOn
		}
		pdu = be(WriteSingleCoil, uint16(pt.Address), on)
	} else {
		pdu = be(WriteSingleRegister, uint16(pt.Address), plant.Raw(pt, v))
	}
	if _, err := c.Do(ctx, unit, pdu); err != nil {
		return fmt.Errorf("write %s = %g: %w", pt.Name, v, err)
	}
	return nil
}

// Poll is an HMI's poll: it reads every point of reads, and writes v to
// write when write is not nil (a legitimate operator's setpoint change,
// within its bounds).
func Poll(ctx context.Context, c *Client, unit uint8, reads []*scenario.Point, write *scenario.Point, v float64) error {
	var errs []error
	for _, pt := range reads {
		if _, err := Read(ctx, c, unit, pt); err != nil {
			errs = append(errs, err)
		}
	}
	if write != nil {
		errs = append(errs, Write(ctx, c, unit, write, v))
	}
	return errors.Join(errs...)
}

// BruteForce writes a coil on and off n times, each write as soon as the
// last is answered: the brute force I/O of ATT&CK T0806.
func BruteForce(ctx context.Context, c *Client, unit uint8, coil *scenario.Point, n int) error {
	for i := range n {
		if err := Write(ctx, c, unit, coil, float64((i+1)%2)); err != nil {
			return err
		}
	}
	return nil
}

// Diagnostic sends Diagnostics (FC 8) with a sub-function and data 0x0000:
// 4 is Force Listen Only Mode, 1 Restart Communications Option. Devices
// that do not implement FC 8 answer exception 1, which is no error here.
func Diagnostic(ctx context.Context, c *Client, unit uint8, sub uint16) error {
	_, err := c.Do(ctx, unit, be(Diagnostics, sub, 0))
	return tolerate(err)
}

// Identify sends Read Device Identification (FC 43, MEI 14), basic
// objects from object 0.
func Identify(ctx context.Context, c *Client, unit uint8) error {
	_, err := c.Do(ctx, unit, []byte{EncapsulatedInterface, ReadDeviceID, ReadDeviceIDBasic, 0})
	return tolerate(err)
}

// UnitScan reads holding register 0 of units from, from+1, ... (n of
// them), as a scanner enumerates what is behind a gateway.
func UnitScan(ctx context.Context, c *Client, from uint8, n int) error {
	for u := int(from); u < int(from)+n && u < 256; u++ {
		if _, err := c.Do(ctx, uint8(u), be(ReadHoldingRegisters, 0, 1)); tolerate(err) != nil {
			return err
		}
	}
	return nil
}

// FunctionScan sends each function code of fcs with no data: which does the
// device implement?
func FunctionScan(ctx context.Context, c *Client, unit uint8, fcs []int) error {
	for _, fc := range fcs {
		if _, err := c.Do(ctx, unit, []byte{byte(fc)}); tolerate(err) != nil {
			return err
		}
	}
	return nil
}

// Function sends function code fc with data, such as Schneider's UMAS (90)
// or another user-defined code.
func Function(ctx context.Context, c *Client, unit uint8, fc byte, data []byte) error {
	_, err := c.Do(ctx, unit, append([]byte{fc}, data...))
	return tolerate(err)
}

// tolerate makes an exception answer no error: to a scan or a diagnostic,
// an exception is an answer.
func tolerate(err error) error {
	if errors.Is(err, ErrException) {
		return nil
	}
	return err
}

// Act is one firing of a scenario actor: what Run does at each time of its
// schedule. n counts the firings (the HMI and writers write Values[n %
// len]). It returns what the actor did, in words.
func Act(ctx context.Context, c *Client, s *scenario.Scenario, a *scenario.Actor, n int) (string, error) {
	p := s.Plant(a.Target)
	unit := uint8(a.Unit)
	pt := p.Point(a.Point)
	value := func() float64 {
		if len(a.Values) == 0 {
			return 0
		}
		return a.Values[n%len(a.Values)]
	}
	switch a.Do {
	case scenario.DoHMI:
		var reads []*scenario.Point
		for _, r := range a.Reads {
			reads = append(reads, p.Point(r))
		}
		did := fmt.Sprintf("read %s", strings.Join(a.Reads, ", "))
		var w *scenario.Point
		if pt != nil && len(a.Values) > 0 {
			w = pt
			did += fmt.Sprintf("; wrote %s = %g", pt.Name, value())
		}
		return did, Poll(ctx, c, unit, reads, w, value())
	case scenario.DoWrite:
		return fmt.Sprintf("wrote %s (%s %d) = %g", pt.Name, pt.Table, pt.Address, value()), Write(ctx, c, unit, pt, value())
	case scenario.DoBruteForce:
		return fmt.Sprintf("toggled coil %s (%d) %d times", pt.Name, pt.Address, a.Count), BruteForce(ctx, c, unit, pt, a.Count)
	case scenario.DoDiagnostic:
		return fmt.Sprintf("sent diagnostics (FC 8) sub-function %d", a.Subfunction), Diagnostic(ctx, c, unit, uint16(a.Subfunction))
	case scenario.DoIdentify:
		return "read device identification (FC 43/14)", Identify(ctx, c, unit)
	case scenario.DoUnitScan:
		return fmt.Sprintf("read holding 0 of units %d-%d", a.Unit, a.Unit+a.Count-1), UnitScan(ctx, c, unit, a.Count)
	case scenario.DoFunctionScan:
		return fmt.Sprintf("tried function codes %v", a.Functions), FunctionScan(ctx, c, unit, a.Functions)
	case scenario.DoFunction:
		data, _ := a.Payload()
		return fmt.Sprintf("sent function code %d with %d bytes", a.Function, len(data)), Function(ctx, c, unit, byte(a.Function), data)
	}
	return "", fmt.Errorf("actor %q: unknown action %q", a.Name, a.Do)
}
