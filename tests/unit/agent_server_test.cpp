// SPDX-License-Identifier: Apache-2.0
// The guest agent's side of the protocol (lab/agent/agent_server.cpp), served
// on a thread over a socketpair: what a broken or hostile host line gets.
#include "agent_server.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "memhp/files.hpp"
#include "memhp/lab/agent_protocol.hpp"
#include "test_util.hpp"

namespace memhp::agent {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// memhp-agent's serve() on one end, a raw peer (the "host") on the other.
class Served : public ::testing::Test {
protected:
    Served() : fds_(test::make_socketpair()), host_(fds_.far), channel_(fds_.near, "vport") {
        server_ = std::jthread([this] {
            try {
                serve(channel_);
            } catch (const ChannelClosed&) {  // the host hung up: the test is over
            } catch (const std::exception& e) {
                ended_with_ = e.what();
            }
        });
        hello_ = next();
    }
    ~Served() override {
        host_.close();
        server_.join();
        EXPECT_EQ(ended_with_, "") << "serve() ended with an error instead of the host closing";
    }
    json next() {
        auto line = host_.read_line();
        if (!line) return nullptr;
        return json::parse(*line);
    }
    json ask(const std::string& raw) {
        host_.send(raw + "\n");
        return next();
    }

    test::SocketPair fds_;
    test::Peer host_;
    LineChannel channel_;
    std::jthread server_;
    std::string ended_with_;
    json hello_;
};

TEST_F(Served, SaysHelloThenAnswersPing) {
    EXPECT_EQ(hello_["event"], "hello");
    EXPECT_EQ(hello_["proto"], lab::kAgentProtocol);
    const auto r = ask(R"({"id":1,"op":"ping"})");
    EXPECT_EQ(r["id"], 1);
    EXPECT_EQ(r["ok"], true);
}

TEST_F(Served, BadRequestsAreAnsweredAndTheAgentGoesOn) {
    const std::pair<const char*, const char*> cases[] = {
        {"{not json", "not JSON"},
        {"[1,2]", "not a JSON object"},
        {R"({"id":2})", "missing \"op\""},
        {R"({"id":3,"op":7})", "\"op\" must be a string"},
        {R"({"id":4,"op":"format-disk"})", "unknown op 'format-disk'"},
        {R"({"id":5,"op":"exec"})", "missing \"argv\""},
        {R"({"id":6,"op":"exec","argv":[]})", "empty argv"},
        {R"({"id":7,"op":"exec","argv":["true",1]})", "array of strings"},
        {R"({"id":8,"op":"exec","argv":["true"],"timeout_ms":-1})", "\"timeout_ms\" must be in"},
        {R"({"id":9,"op":"exec","argv":["true"],"timeout_ms":1e300})", "\"timeout_ms\" must be an integer"},
        {R"({"id":10,"op":"wait","pid":18446744073709551615})", "\"pid\" must be in"},
        {R"({"id":11,"op":"wait"})", "missing \"pid\""},
        {R"({"id":12,"op":"signal","pid":0})", "\"pid\" must be in"},
        {R"({"id":13,"op":"signal","pid":1,"signal":999})", "\"signal\" must be in"},
        {R"({"id":14,"op":"write","path":"/x"})", "missing \"data\""},
        {R"({"id":15,"op":"read","paths":"/etc/passwd"})", "array of strings"},
        {R"({"id":16,"op":"signal","pid":1})", "was not spawned by the agent"},
    };
    for (const auto& [line, says] : cases) {
        const auto r = ask(line);
        EXPECT_EQ(r["ok"], false) << line;
        EXPECT_THAT(r.value("error", ""), HasSubstr(says)) << line;
    }
    EXPECT_EQ(ask(R"({"id":99,"op":"ping"})")["ok"], true);
}

TEST_F(Served, OversizedRequestIsRefusedAndTheAgentSurvives) {
    // In the issue, one 1 MiB request line ended the agent (bad_alloc outside
    // the per-request try). Now: an error reply naming the limit, the rest of
    // the line skipped, and the next request served.
    std::jthread sender([this] {
        host_.send(R"({"id":1,"op":"write","path":"/dev/null","data":")" + std::string(3 << 20, 'x') + "\"}\n");
        host_.send(R"({"id":2,"op":"ping"})"
                   "\n");
    });
    const auto r = next();
    EXPECT_EQ(r["ok"], false);
    EXPECT_EQ(r["id"], nullptr);
    EXPECT_THAT(r.value("error", ""), HasSubstr(std::to_string(lab::kAgentMaxRequest) + " bytes"));
    const auto pong = next();
    EXPECT_EQ(pong["id"], 2);
    EXPECT_EQ(pong["ok"], true);
}

TEST_F(Served, ExecAndReadWork) {
    TempDir dir;
    write_file(dir.path() / "f", "content\n");
    auto r = ask(R"({"id":1,"op":"exec","argv":["/bin/sh","-c","echo out; echo err >&2; exit 3"]})");
    EXPECT_EQ(r["exit_code"], 3);
    EXPECT_EQ(r["stdout"], "out\n");
    EXPECT_EQ(r["stderr"], "err\n");
    r = ask(json{{"id", 2}, {"op", "read"}, {"paths", {(dir.path() / "f").string(), "/nonexistent"}}}.dump());
    EXPECT_EQ(r["files"][(dir.path() / "f").string()], "content\n");
    EXPECT_EQ(r["files"]["/nonexistent"], nullptr);
}

TEST_F(Served, ReadFromReturnsWholeLinesFromAnOffset) {
    TempDir dir;
    const auto f = (dir.path() / "trace.ndjson").string();
    write_file(f, "one\ntwo\nthr");  // the last line is still being written
    auto r = ask(json{{"id", 1}, {"op", "read_from"}, {"path", f}, {"offset", 0}}.dump());
    EXPECT_EQ(r["data"], "one\ntwo\n");
    EXPECT_EQ(r["next"], 8);
    EXPECT_EQ(r["size"], 11);
    r = ask(json{{"id", 2}, {"op", "read_from"}, {"path", f}, {"offset", 8}}.dump());
    EXPECT_EQ(r["data"], "") << "no complete line yet";
    EXPECT_EQ(r["next"], 8);
    r = ask(json{{"id", 3}, {"op", "read_from"}, {"path", f}, {"offset", 400}}.dump());
    EXPECT_EQ(r["ok"], true) << "past the end is nothing new";
    EXPECT_EQ(r["data"], "");
    // Bigger than a chunk: whole lines up to the chunk, then the rest.
    const std::string line(1000, 'x');
    std::string big;
    while (big.size() < lab::kAgentReadChunk + 5000) big += line + "\n";
    write_file(f, big);
    r = ask(json{{"id", 4}, {"op", "read_from"}, {"path", f}, {"offset", 0}}.dump());
    const auto first = r["data"].get<std::string>();
    EXPECT_LE(first.size(), lab::kAgentReadChunk);
    EXPECT_EQ(first.size() % (line.size() + 1), 0u) << "cut after a line";
    r = ask(json{{"id", 5}, {"op", "read_from"}, {"path", f}, {"offset", first.size()}}.dump());
    EXPECT_EQ(first + r["data"].get<std::string>(), big);
    // Not a regular file, missing, a bad offset: an error reply, the agent goes on.
    r = ask(json{{"id", 6}, {"op", "read_from"}, {"path", "/dev/zero"}, {"offset", 0}}.dump());
    EXPECT_EQ(r["ok"], false);
    EXPECT_THAT(r.value("error", ""), HasSubstr("not a regular file"));
    r = ask(json{{"id", 7}, {"op", "read_from"}, {"path", "/nonexistent"}, {"offset", 0}}.dump());
    EXPECT_EQ(r["ok"], false);
    r = ask(json{{"id", 8}, {"op", "read_from"}, {"path", f}, {"offset", -1}}.dump());
    EXPECT_EQ(r["ok"], false);
    EXPECT_EQ(ask(R"({"id":9,"op":"ping"})")["ok"], true);
}

TEST_F(Served, ExecTimeoutHoldsWhenTheChildClosedItsPipes) {
    // In the issue such an exec overran a 1 s timeout by 5 s: the agent
    // waited for the exit without a deadline once the pipes were closed.
    const auto t0 = std::chrono::steady_clock::now();
    const auto r =
        ask(R"({"id":1,"op":"exec","argv":["/bin/sh","-c","exec >/dev/null 2>&1; sleep 30"],"timeout_ms":300})");
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(r["timed_out"], true);
    EXPECT_EQ(r["exit_code"], 128 + 9) << "killed";
    EXPECT_LT(took, std::chrono::seconds(10)) << "not the child's 30 s";
}

TEST_F(Served, ReplyOverTheFrameLimitBecomesAnError) {
    // Two files just under the read bound make one reply over kAgentMaxResponse:
    // the host would refuse that line, so the agent sends an error instead.
    TempDir dir;
    const std::string half(lab::kAgentMaxResponse / 2 + 1024, 'y');
    write_file(dir.path() / "a", half);
    write_file(dir.path() / "b", half);
    const auto r = ask(
        json{{"id", 3}, {"op", "read"}, {"paths", {(dir.path() / "a").string(), (dir.path() / "b").string()}}}.dump());
    EXPECT_EQ(r["id"], 3);
    EXPECT_EQ(r["ok"], false);
    EXPECT_THAT(r.value("error", ""), HasSubstr("read less at a time"));
    EXPECT_EQ(ask(R"({"id":4,"op":"ping"})")["ok"], true);
}

TEST(AgentRequest, ParsesEachOpWithItsDefaults) {
    auto r = parse_request(R"({"id":"x","op":"exec","argv":["ls","-l"]})");
    EXPECT_EQ(r.id, "x");
    EXPECT_EQ(r.argv, (std::vector<std::string>{"ls", "-l"}));
    EXPECT_EQ(r.timeout_ms, 60000);
    EXPECT_EQ(parse_request(R"({"op":"wait","pid":5})").timeout_ms, 0);
    EXPECT_EQ(parse_request(R"({"op":"signal","pid":5})").signal, 15);
    EXPECT_EQ(parse_request(R"({"op":"spawn","argv":["x"]})").output, "/dev/null");
    EXPECT_EQ(parse_request(R"({"op":"read","paths":["/a","/b"]})").paths.size(), 2u);
    EXPECT_THROW((void)parse_request(R"({"op":"exec","argv":["x"],"timeout_ms":86400001})"), Error);
}

}  // namespace
}  // namespace memhp::agent
