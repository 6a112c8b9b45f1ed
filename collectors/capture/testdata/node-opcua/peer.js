// A node-opcua server and client on 127.0.0.1:<port>, security None: the
// client writes a setpoint and calls a method, once in an anonymous
// session and once as user "operator" with the password given, then
// prints what it did as one JSON line. plcwatch's live capture test
// (collectors/capture/opcua_live_test.go) checks that it saw all of it.
//
// usage: NODE_PATH=tools/node-opcua/node_modules node peer.js PORT PASSWORD
"use strict";
const opcua = require("node-opcua");
const { OPCUAServer, OPCUAClient, DataType, StatusCodes, AttributeIds, MessageSecurityMode, SecurityPolicy, UserTokenType } = opcua;

async function main() {
  const port = parseInt(process.argv[2], 10);
  const password = process.argv[3];
  const server = new OPCUAServer({
    port,
    hostname: "127.0.0.1",
    securityModes: [MessageSecurityMode.None],
    securityPolicies: [SecurityPolicy.None],
    allowAnonymous: true,
    userManager: { isValidUser: (user, pass) => user === "operator" && pass === password },
    serverInfo: { applicationUri: "urn:plcwatch:test:node-opcua-server" },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.getOwnNamespace();
  const boiler = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "Boiler", nodeId: "s=Boiler" });
  let setpoint = 60.0;
  ns.addVariable({
    componentOf: boiler, browseName: "Setpoint", nodeId: "s=Boiler.Setpoint", dataType: "Double",
    minimumSamplingInterval: 100,
    value: {
      get: () => new opcua.Variant({ dataType: DataType.Double, value: setpoint }),
      set: (v) => { setpoint = v.value; return StatusCodes.Good; },
    },
  });
  const start = ns.addMethod(boiler, {
    browseName: "Start", nodeId: "s=Boiler.Start",
    inputArguments: [{ name: "speed", dataType: DataType.Int32 }],
    outputArguments: [{ name: "accepted", dataType: DataType.Boolean }],
  });
  start.bindMethod((inputs, context, callback) => {
    callback(null, { statusCode: StatusCodes.Good, outputArguments: [{ dataType: DataType.Boolean, value: true }] });
  });
  // A user name token policy without a security policy on the None
  // endpoint: the password crosses the wire in clear text, the worst case
  // for a passive observer that must never repeat it. (node-opcua's
  // allowUnsecurePassword is not wired to OPCUAServer's options yet.)
  for (const ep of server.endpoints) {
    for (const d of ep.endpointDescriptions()) {
      d.userIdentityTokens.push(new opcua.UserTokenPolicy({ policyId: "username_unsecure", tokenType: UserTokenType.UserName }));
    }
  }
  await server.start();
  const nsIndex = ns.index;

  const client = OPCUAClient.create({
    applicationName: "plcwatch-test-client",
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 2, initialDelay: 100, maxDelay: 500 },
  });
  await client.connect(`opc.tcp://127.0.0.1:${port}`);
  const done = [];
  for (const [identity, userIdentity, value, speed] of [
    ["anonymous", { type: UserTokenType.Anonymous }, 71.5, 1200],
    ["username", { type: UserTokenType.UserName, userName: "operator", password }, 88.25, 900],
  ]) {
    const session = await client.createSession(userIdentity);
    const ws = await session.write({
      nodeId: `ns=${nsIndex};s=Boiler.Setpoint`, attributeId: AttributeIds.Value,
      value: { value: { dataType: DataType.Double, value } },
    });
    const cr = await session.call({
      objectId: `ns=${nsIndex};s=Boiler`, methodId: `ns=${nsIndex};s=Boiler.Start`,
      inputArguments: [{ dataType: DataType.Int32, value: speed }],
    });
    await session.close();
    done.push({ identity, user: identity === "username" ? "operator" : "", value, speed,
      write: ws.value, call: cr.statusCode.value });
  }
  await client.disconnect();
  await server.shutdown(0);
  console.log(JSON.stringify({ ns: nsIndex, sessions: done }));
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
