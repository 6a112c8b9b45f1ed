#!/usr/bin/python3
"""A pymodbus server holding golden values that pymodbus itself encodes.

Usage: pymodbus_server.py SPEC.json PORT [rtu]
       pymodbus_server.py SPEC.json /dev/TTY serial

SPEC lists values to place: {"holding": [...], "input": [...], "coils": [...],
"discrete": [...]}; a register value is {"address", "type", "order", "value"}
(order ABCD, DCBA, BADC, CDAB: where the bytes of the big-endian value sit on
the wire), a bit {"address", "value"}. pymodbus's BinaryPayloadBuilder does
the encoding, so the poller's decoding is checked against an implementation
that is not ours. Prints "ready" once it listens. With "rtu", it speaks RTU
framing over TCP; with "serial", RTU on a serial line (a pty in the tests).

Faults, so that the poller's handling of them is checked against a real
peer's framing: "holes" lists holding addresses absent from the map (a read
that touches one gets exception 2); "exception_base" B makes a read of holding
register B + 2c answer exception c (1-255), encoded by pymodbus's own
ExceptionResponse; "units" lists the unit ids served (the same registers for
each), and "ignore_missing" makes the others silent (as behind a gateway whose
serial device is off) instead of answering exception 11.
"""
import asyncio
import json
import logging
import sys

from pymodbus.constants import Endian
from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)
from pymodbus.datastore import ModbusSparseDataBlock
from pymodbus.payload import BinaryPayloadBuilder
from pymodbus.pdu import ExceptionResponse
from pymodbus.register_read_message import ReadHoldingRegistersRequest
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer
from pymodbus.transaction import ModbusRtuFramer, ModbusSocketFramer

# byte order within a register, word order between registers
ORDERS = {
    "ABCD": (Endian.Big, Endian.Big),
    "DCBA": (Endian.Little, Endian.Little),
    "BADC": (Endian.Little, Endian.Big),
    "CDAB": (Endian.Big, Endian.Little),
}


def encode(v):
    byteorder, wordorder = ORDERS[v.get("order") or "ABCD"]
    b = BinaryPayloadBuilder(byteorder=byteorder, wordorder=wordorder)
    t, x = v["type"], v["value"]
    if t == "string":
        raw = x.encode().ljust(2 * v["length"], b"\0")
        if v.get("order") in ("BADC", "DCBA"):
            raw = b"".join(raw[i + 1:i + 2] + raw[i:i + 1] for i in range(0, len(raw), 2))
        return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    {
        "int16": b.add_16bit_int, "uint16": b.add_16bit_uint,
        "int32": b.add_32bit_int, "uint32": b.add_32bit_uint,
        "int64": b.add_64bit_int, "uint64": b.add_64bit_uint,
        "float32": b.add_32bit_float, "float64": b.add_64bit_float,
    }[t](x)
    return b.to_registers()


def block(values, size=1024):
    regs = [0] * size
    for v in values:
        for i, r in enumerate(encode(v)):
            regs[v["address"] + i] = r
    return regs


def bits(values, size=1024):
    out = [False] * size
    for v in values:
        out[v["address"]] = bool(v["value"])
    return out


def answer_exceptions(base):
    """Reads of holding register base + 2c answer exception c."""
    execute = ReadHoldingRegistersRequest.execute

    def with_exceptions(self, context):
        if base <= self.address < base + 2 * 256 and (self.address - base) % 2 == 0:
            return ExceptionResponse(self.function_code, (self.address - base) // 2)
        return execute(self, context)

    ReadHoldingRegistersRequest.execute = with_exceptions


async def main():
    spec = json.load(open(sys.argv[1]))
    mode = sys.argv[3] if len(sys.argv) > 3 else "tcp"
    if "exception_base" in spec:
        answer_exceptions(spec["exception_base"])
    holding = ModbusSequentialDataBlock(0, block(spec.get("holding", [])))
    if spec.get("holes"):
        regs = block(spec.get("holding", []))
        holding = ModbusSparseDataBlock({a: r for a, r in enumerate(regs) if a not in spec["holes"]})
    # zero_mode: address 0 is the first register. pymodbus's default adds 1
    # to every address, the off-by-one users of other tools trip over.
    slave = ModbusSlaveContext(
        hr=holding,
        ir=ModbusSequentialDataBlock(0, block(spec.get("input", []))),
        co=ModbusSequentialDataBlock(0, bits(spec.get("coils", []))),
        di=ModbusSequentialDataBlock(0, bits(spec.get("discrete", []))),
        zero_mode=True)
    context = ModbusServerContext(slaves=slave, single=True)
    if "units" in spec:
        context = ModbusServerContext(slaves={u: slave for u in spec["units"]}, single=False)
    missing = {"ignore_missing_slaves": bool(spec.get("ignore_missing"))}
    if mode == "serial":
        server = await StartAsyncSerialServer(context=context, port=sys.argv[2], framer=ModbusRtuFramer,
                                              baudrate=19200, defer_start=True, **missing)
        await server.start()
        print("ready", flush=True)
        await asyncio.Event().wait()
    framer = ModbusRtuFramer if mode == "rtu" else ModbusSocketFramer
    server = await StartAsyncTcpServer(context=context, address=("127.0.0.1", int(sys.argv[2])),
                                       framer=framer, defer_start=True, allow_reuse_address=True, **missing)
    print("ready", flush=True)
    await server.serve_forever()


logging.basicConfig(level=logging.ERROR)
asyncio.run(main())
