// SPDX-License-Identifier: Apache-2.0
#pragma once
// The host <-> guest agent protocol, version 1.
//
// Transport: a virtio-serial port named kAgentPortName; on the host, the unix
// socket QEMU serves for it. One JSON object per line in each direction.
//
// Guest -> host, once at start:
//   {"event":"hello","proto":1,"release":"6.1.0-56-amd64","uptime_s":3.1}
// Host -> guest, one request at a time:
//   {"id":N,"op":"exec","argv":[...],"timeout_ms":T}
//        -> {"id":N,"ok":true,"exit_code":C,"stdout":"..","stderr":"..","timed_out":false}
//   {"id":N,"op":"read","paths":[...]}     -> {"id":N,"ok":true,"files":{path:content|null}}
//   {"id":N,"op":"write","path":P,"data":D} -> {"id":N,"ok":true} | {"ok":false,"errno":E,"error":".."}
//   {"id":N,"op":"listdir","path":P}        -> {"id":N,"ok":true,"entries":[...]}
//   {"id":N,"op":"spawn","argv":[...],"output":F} -> {"id":N,"ok":true,"pid":P}
//   {"id":N,"op":"wait","pid":P,"timeout_ms":T} -> {"id":N,"ok":true,"exited":B,"exit_code":C}
//   {"id":N,"op":"signal","pid":P,"signal":S} -> {"id":N,"ok":true}
//   {"id":N,"op":"ping"}                    -> {"id":N,"ok":true,"uptime_s":U}
// Any failure: {"id":N,"ok":false,"error":"text","errno":E (when there is one)}.
// Strings that are not valid UTF-8 are sent with U+FFFD replacements.
// Frames are bounded: a request line is at most kAgentMaxRequest bytes (a
// longer one is answered {"id":null,"ok":false,"error":..} and skipped), a
// reply at most kAgentMaxResponse (the agent answers an error instead, e.g.
// for a read of a file that large); each side refuses a longer line.
#include <cstddef>
namespace memhp::lab {
inline constexpr std::size_t kAgentMaxRequest = std::size_t{1} << 20;
inline constexpr std::size_t kAgentMaxResponse = std::size_t{16} << 20;
// "read_from" returns at most this many bytes of a file from an offset, cut
// after its last complete line: a growing log read piece by piece, whatever
// its size (JSON escaping can grow a chunk up to 6 times; this stays inside
// kAgentMaxResponse).
inline constexpr std::size_t kAgentReadChunk = std::size_t{1} << 20;
inline constexpr const char* kAgentPortName = "memhp.agent";
inline constexpr int kAgentProtocol = 1;
}  // namespace memhp::lab
