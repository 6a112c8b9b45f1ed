module github.com/plcwatch/plcwatch

go 1.26.8

require (
	github.com/expr-lang/expr v1.17.8
	github.com/google/gopacket v1.1.19
	github.com/simonvetter/modbus v1.6.4
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.49.0
	gopkg.in/yaml.v3 v3.0.1
)

require github.com/goburrow/serial v0.1.0 // indirect
