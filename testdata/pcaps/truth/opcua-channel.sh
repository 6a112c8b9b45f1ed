#!/usr/bin/env bash
# Writes <capture>.channel.tsv for every OPC UA capture in ../opcua (and for
# the capture files given as arguments): tshark's reading
# of Hello and Acknowledge sizes and of OpenSecureChannel token requests,
# lifetimes and token ids, which collectors/capture/opcua_truth_test.go
# compares with plcwatch's events. Reads files only (-n). Written against
# TShark 4.0.17 (Debian 12 package `tshark`), as the other truth files.
set -euo pipefail
cd "$(dirname "$0")"
FIELDS=(frame.number tcp.stream opcua.transport.type opcua.transport.rbs opcua.transport.sbs
  opcua.transport.mms opcua.transport.mcc opcua.security.rqid opcua.SecurityTokenRequestType
  opcua.RequestedLifetime opcua.RevisedLifetime opcua.TokenId)
E=(); for f in "${FIELDS[@]}"; do E+=(-e "$f"); done
for p in ../opcua/*.pcap "$@"; do
  name=$(basename "$p" .pcap)
  da=()
  case "$name" in
    icsnpp_open62541_client-server_mainloop-not-localhost-non-standard-port) da=(-d tcp.port==48010,opcua) ;;
    iti_opc-ua-ap-method-wireshark-freeze) da=(-d tcp.port==12001,opcua) ;;
  esac
  tshark -n -E header=y -E separator=/t -E quote=n -E occurrence=a -E 'aggregator=|' -r "$p" "${da[@]}" \
    -Y 'opcua.transport.type == "HEL" || opcua.transport.type == "ACK" || opcua.transport.type == "OPN"' \
    -T fields "${E[@]}" > "$name.channel.tsv" 2>/dev/null
done
