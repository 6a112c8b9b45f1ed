// A node-opcua server for plcwatch's OPC UA collector tests and benchmark:
// security None and Basic256Sha256 Sign/SignAndEncrypt, anonymous and user
// "operator" (password from the PASSWORD environment variable), one
// variable of each built-in type plus arrays in namespace
// urn:plcwatch:test:node-opcua, and N more (Var0..VarN-1, Double) that
// change every second when N > 0. The server's certificates live under
// PKI_DIR (made on the first start, kept after): a restart with the same
// folder presents the same certificate. Client certificates are accepted
// automatically (the tests are about plcwatch trusting the server).
//
// Commands on stdin, one per line:
//   set NAME JSON [STATUS]   set a variable's value (and status code name)
//   exit                     shut down
// It prints one JSON line when listening: {"ready":true,"ns":N,"uri":...}.
//
// usage: NODE_PATH=tools/node-opcua/node_modules PASSWORD=... \
//        node server.js PORT PKI_DIR [N]
"use strict";
const opcua = require("node-opcua");
const { OPCUAServer, OPCUACertificateManager, DataType, Variant, VariantArrayType, StatusCodes, MessageSecurityMode, SecurityPolicy } = opcua;
const readline = require("readline");

async function main() {
  const port = parseInt(process.argv[2], 10);
  const pkiDir = process.argv[3];
  const n = parseInt(process.argv[4] || "0", 10);
  const password = process.env.PASSWORD || "";
  const serverCertificateManager = new OPCUACertificateManager({ rootFolder: pkiDir, automaticallyAcceptUnknownCertificate: true });
  await serverCertificateManager.initialize();
  const server = new OPCUAServer({
    port,
    hostname: "127.0.0.1",
    serverCertificateManager,
    certificateFile: pkiDir + "/own/certs/server.pem",
    privateKeyFile: pkiDir + "/own/private/private_key.pem",
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    allowAnonymous: true,
    userManager: { isValidUser: (user, pass) => user === "operator" && password !== "" && pass === password },
    serverInfo: { applicationUri: "urn:plcwatch:test:node-opcua-server" },
    serverCapabilities: { operationLimits: { maxNodesPerRead: 1000, maxMonitoredItemsPerCall: 1000 } },
    maxConnectionsPerEndpoint: 100,
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.registerNamespace("urn:plcwatch:test:node-opcua");
  const folder = ns.addFolder(addressSpace.rootFolder.objects, { browseName: "Plant", nodeId: "s=Plant" });
  const vars = {};
  const add = (name, dataType, value, array) => {
    vars[name] = ns.addVariable({
      componentOf: folder, browseName: name, nodeId: "s=" + name, dataType,
      valueRank: array ? 1 : -1, arrayDimensions: array ? [value.length] : undefined,
      minimumSamplingInterval: 50,
      value: new Variant({ dataType, arrayType: array ? VariantArrayType.Array : VariantArrayType.Scalar, value }),
    });
    vars[name].__dataType = dataType;
    vars[name].__array = array;
  };
  const when = new Date(Date.UTC(2026, 10, 29, 8, 30, 0));
  add("Boolean", DataType.Boolean, true);
  add("SByte", DataType.SByte, -8);
  add("Byte", DataType.Byte, 200);
  add("Int16", DataType.Int16, -1600);
  add("UInt16", DataType.UInt16, 60000);
  add("Int32", DataType.Int32, -320000);
  add("UInt32", DataType.UInt32, 4000000000);
  add("Int64", DataType.Int64, [4294967294, 2189934592]);
  add("UInt64", DataType.UInt64, [2, 4210065408]);
  add("Float", DataType.Float, 3.25);
  add("Double", DataType.Double, 6.125);
  add("String", DataType.String, "running");
  add("DateTime", DataType.DateTime, when);
  add("Guid", DataType.Guid, "72962B91-FA75-4AE6-8D28-B404DC7DAF63");
  add("ByteString", DataType.ByteString, Buffer.from([0xde, 0xad, 0xbe, 0xef]));
  add("XmlElement", DataType.XmlElement, "<a>1</a>");
  add("NodeId", DataType.NodeId, opcua.coerceNodeId("ns=1;s=Pump1"));
  add("ExpandedNodeId", DataType.ExpandedNodeId, opcua.makeExpandedNodeId(2253, 0));
  add("StatusCode", DataType.StatusCode, StatusCodes.BadSensorFailure);
  add("QualifiedName", DataType.QualifiedName, new opcua.QualifiedName({ namespaceIndex: 1, name: "Pump1" }));
  add("LocalizedText", DataType.LocalizedText, new opcua.LocalizedText({ locale: "en", text: "Pump 1" }));
  add("BooleanArray", DataType.Boolean, [true, false, true], true);
  add("Int16Array", DataType.Int16, new Int16Array([-1, 0, 1]), true);
  add("UInt16Array", DataType.UInt16, new Uint16Array([1, 2, 3]), true);
  add("Int32Array", DataType.Int32, new Int32Array([-100, 200, -300]), true);
  add("UInt32Array", DataType.UInt32, new Uint32Array([10, 20]), true);
  add("FloatArray", DataType.Float, new Float32Array([1.5, -2.5]), true);
  add("DoubleArray", DataType.Double, new Float64Array([0.5, 1.5, 2.5, 3.5]), true);
  add("StringArray", DataType.String, ["a", "b"], true);
  add("Level", DataType.Double, 1.0);
  const many = [];
  for (let i = 0; i < n; i++) {
    many.push(ns.addVariable({ componentOf: folder, browseName: "Var" + i, nodeId: "s=Var" + i, dataType: "Double",
      minimumSamplingInterval: 100, value: new Variant({ dataType: DataType.Double, value: 0 }) }));
  }
  if (n > 0) {
    let tick = 0;
    setInterval(() => {
      tick++;
      for (let i = 0; i < many.length; i++) {
        many[i].setValueFromSource(new Variant({ dataType: DataType.Double, value: tick + i / 1000 }), StatusCodes.Good);
      }
    }, 1000);
  }
  await server.start();
  console.log(JSON.stringify({ ready: true, ns: ns.index, uri: ns.namespaceUri }));
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", async (line) => {
    const [cmd, name, json, status] = line.trim().split(" ");
    if (cmd === "exit") {
      await server.shutdown(0);
      process.exit(0);
    }
    if (cmd === "set" && vars[name]) {
      const v = vars[name];
      const value = JSON.parse(json);
      const code = status ? StatusCodes[status] : StatusCodes.Good;
      v.setValueFromSource(new Variant({ dataType: v.__dataType, arrayType: v.__array ? VariantArrayType.Array : VariantArrayType.Scalar, value }), code);
      console.log(JSON.stringify({ set: name }));
    }
  });
  rl.on("close", async () => { await server.shutdown(0); process.exit(0); });
}

main().catch((err) => { console.error(err); process.exit(1); });
