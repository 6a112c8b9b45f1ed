// Package modbustcp dissects Modbus/TCP: it frames ADUs out of reassembled
// TCP streams, decodes every public function code's request and response
// PDUs, pairs responses with requests by transaction id, and turns each
// request into one plcwatch.Event.
//
// References: Modbus Application Protocol Specification V1.1b3 (the PDUs) and
// Modbus Messaging on TCP/IP Implementation Guide V1.0b (the MBAP header).
package modbustcp

import (
	"strconv"
	"strings"

	"github.com/plcwatch/plcwatch"
)

// Function codes of the public Modbus application protocol.
const (
	ReadCoils                  = 1
	ReadDiscreteInputs         = 2
	ReadHoldingRegisters       = 3
	ReadInputRegisters         = 4
	WriteSingleCoil            = 5
	WriteSingleRegister        = 6
	ReadExceptionStatus        = 7
	Diagnostics                = 8
	GetCommEventCounter        = 11
	GetCommEventLog            = 12
	WriteMultipleCoils         = 15
	WriteMultipleRegisters     = 16
	ReportServerID             = 17
	ReadFileRecord             = 20
	WriteFileRecord            = 21
	MaskWriteRegister          = 22
	ReadWriteMultipleRegisters = 23
	ReadFIFOQueue              = 24
	EncapsulatedInterface      = 43

	// MEI types of FC 43.
	MEICANopen     = 13
	MEIDeviceIdent = 14
)

// Diagnostics (FC 8) sub-functions that rules most often name.
const (
	DiagReturnQueryData = 0
	DiagRestartComms    = 1
	DiagForceListenOnly = 4
	DiagClearCounters   = 10
)

// function describes what a function code does.
type function struct {
	name  string
	op    plcwatch.Op
	table plcwatch.Table
}

var functions = [128]function{
	ReadCoils:                  {"read_coils", plcwatch.OpRead, plcwatch.TableCoil},
	ReadDiscreteInputs:         {"read_discrete_inputs", plcwatch.OpRead, plcwatch.TableDiscrete},
	ReadHoldingRegisters:       {"read_holding_registers", plcwatch.OpRead, plcwatch.TableHolding},
	ReadInputRegisters:         {"read_input_registers", plcwatch.OpRead, plcwatch.TableInput},
	WriteSingleCoil:            {"write_single_coil", plcwatch.OpWrite, plcwatch.TableCoil},
	WriteSingleRegister:        {"write_single_register", plcwatch.OpWrite, plcwatch.TableHolding},
	ReadExceptionStatus:        {"read_exception_status", plcwatch.OpDiagnostic, plcwatch.TableNone},
	Diagnostics:                {"diagnostics", plcwatch.OpDiagnostic, plcwatch.TableNone},
	GetCommEventCounter:        {"get_comm_event_counter", plcwatch.OpDiagnostic, plcwatch.TableNone},
	GetCommEventLog:            {"get_comm_event_log", plcwatch.OpDiagnostic, plcwatch.TableNone},
	WriteMultipleCoils:         {"write_multiple_coils", plcwatch.OpWrite, plcwatch.TableCoil},
	WriteMultipleRegisters:     {"write_multiple_registers", plcwatch.OpWrite, plcwatch.TableHolding},
	ReportServerID:             {"report_server_id", plcwatch.OpIdentify, plcwatch.TableNone},
	ReadFileRecord:             {"read_file_record", plcwatch.OpRead, plcwatch.TableFile},
	WriteFileRecord:            {"write_file_record", plcwatch.OpWrite, plcwatch.TableFile},
	MaskWriteRegister:          {"mask_write_register", plcwatch.OpWrite, plcwatch.TableHolding},
	ReadWriteMultipleRegisters: {"read_write_multiple_registers", plcwatch.OpWrite, plcwatch.TableHolding},
	ReadFIFOQueue:              {"read_fifo_queue", plcwatch.OpRead, plcwatch.TableHolding},
	EncapsulatedInterface:      {"encapsulated_interface_transport", plcwatch.OpOther, plcwatch.TableNone},
	// Not in the public specification but common in the field: Schneider
	// Electric's UMAS (program upload/download, start/stop) rides on 90.
	90: {"umas", plcwatch.OpOther, plcwatch.TableNone},
}

// FunctionName returns the snake_case name of a function code: the public
// ones by their specification name, the user-defined ranges (65–72,
// 100–110) as user_defined_N, anything else as fc_N.
func FunctionName(fc uint8) string {
	fc &^= 0x80
	if n := functions[fc].name; n != "" {
		return n
	}
	if IsUserDefined(fc) {
		return "user_defined_" + strconv.Itoa(int(fc))
	}
	return "fc_" + strconv.Itoa(int(fc))
}

// ParseFunction accepts a function code number or its name.
func ParseFunction(s string) (uint8, bool) {
	if n, err := strconv.ParseUint(s, 10, 8); err == nil && n < 128 {
		return uint8(n), true
	}
	s = strings.ToLower(strings.TrimSpace(s))
	for fc := range functions {
		if functions[fc].name != "" && functions[fc].name == s {
			return uint8(fc), true
		}
	}
	for _, p := range []string{"user_defined_", "fc_"} {
		if rest, ok := strings.CutPrefix(s, p); ok {
			if n, err := strconv.ParseUint(rest, 10, 8); err == nil && n < 128 {
				return uint8(n), true
			}
		}
	}
	return 0, false
}

// IsUserDefined reports whether fc is in a range the specification leaves to
// vendors (65–72 and 100–110).
func IsUserDefined(fc uint8) bool {
	return (fc >= 65 && fc <= 72) || (fc >= 100 && fc <= 110)
}

// IsPublic reports whether fc is a function code the specification defines.
func IsPublic(fc uint8) bool {
	switch fc {
	case 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43:
		return true
	}
	return false
}

// OpOf returns the operation class of a function code.
func OpOf(fc uint8) plcwatch.Op {
	if op := functions[fc&^0x80].op; op != plcwatch.OpUnknown {
		return op
	}
	return plcwatch.OpOther
}

// TableOf returns the data table a function code addresses.
func TableOf(fc uint8) plcwatch.Table { return functions[fc&^0x80].table }

// ExceptionName names a Modbus exception code.
func ExceptionName(code uint8) string {
	switch code {
	case 1:
		return "illegal_function"
	case 2:
		return "illegal_data_address"
	case 3:
		return "illegal_data_value"
	case 4:
		return "server_device_failure"
	case 5:
		return "acknowledge"
	case 6:
		return "server_device_busy"
	case 8:
		return "memory_parity_error"
	case 10:
		return "gateway_path_unavailable"
	case 11:
		return "gateway_target_failed_to_respond"
	}
	return "exception_" + strconv.Itoa(int(code))
}
