// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/agent_client.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "memhp/lab/agent_protocol.hpp"
#include "test_util.hpp"

namespace memhp::lab {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

const json kHello = {{"event", "hello"}, {"proto", kAgentProtocol}, {"release", "6.1.0-56-amd64"}, {"uptime_s", 3.1}};

// A fake memhp-agent on the far end of a socketpair; `script` runs on a
// thread and records the requests it reads.
class FakeAgent : public test::JsonPeer {
public:
    explicit FakeAgent(std::function<void(FakeAgent&)> script)
        : FakeAgent(test::make_socketpair(), std::move(script)) {}
    ~FakeAgent() {
        client_ = AgentClient();  // closes our end so a blocked script sees EOF
    }

    // Reads a request and answers {"id":..,"ok":true} merged with `fields`.
    void reply(json fields = json::object()) {
        json req = next_request();
        if (req.is_null()) return;
        fields["id"] = req["id"];
        if (!fields.contains("ok")) fields["ok"] = true;
        send(fields);
    }
    void join() {
        if (thread_.joinable()) thread_.join();
    }

    AgentClient& client() { return client_; }

private:
    FakeAgent(test::SocketPair fds, std::function<void(FakeAgent&)> script)
        : JsonPeer(fds.far),
          client_(LineChannel(fds.near, "agent")),
          thread_([this, script = std::move(script)] { script(*this); }) {}
    AgentClient client_;
    std::jthread thread_;  // last: joined first on destruction
};

TEST(AgentClient, WaitHelloSkipsNoiseAndReturnsTheHello) {
    FakeAgent a([](FakeAgent& a) {
        a.send_raw("booting...\n{not json\n");
        a.send({{"event", "log"}, {"text", "x"}});
        a.send(kHello);
    });
    json hello = a.client().wait_hello(2000ms);
    EXPECT_EQ(hello["release"], "6.1.0-56-amd64");
    EXPECT_EQ(hello["uptime_s"], 3.1);
}

TEST(AgentClient, WaitHelloRejectsAnotherProtocol) {
    FakeAgent a([](FakeAgent& a) { a.send({{"event", "hello"}, {"proto", kAgentProtocol + 1}}); });
    try {
        (void)a.client().wait_hello(2000ms);
        FAIL() << "accepted protocol 2";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("protocol " + std::to_string(kAgentProtocol + 1)));
    }
}

TEST(AgentClient, WaitHelloWithoutProtoIsRejected) {
    FakeAgent a([](FakeAgent& a) { a.send({{"event", "hello"}}); });
    EXPECT_THROW((void)a.client().wait_hello(2000ms), Error);
}

TEST(AgentClient, WaitHelloTimesOut) {
    FakeAgent a([](FakeAgent&) {});
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW((void)a.client().wait_hello(200ms), Error);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST(AgentClient, ExecSendsArgvAndMapsTheAnswer) {
    FakeAgent a([](FakeAgent& a) {
        a.reply({{"exit_code", 3}, {"stdout", "out\n"}, {"stderr", "err\n"}, {"timed_out", false}});
        a.reply({{"exit_code", -1}, {"stdout", ""}, {"stderr", ""}, {"timed_out", true}});
        a.reply({{"exit_code", 0}, {"stdout", "ok\n"}, {"stderr", ""}, {"timed_out", false}});
    });
    ExecResult r = a.client().exec({"/bin/cat", "/proc/meminfo"}, 1500ms);
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_EQ(r.out, "out\n");
    EXPECT_EQ(r.err, "err\n");
    EXPECT_FALSE(r.timed_out);
    EXPECT_FALSE(r.ok());

    ExecResult t = a.client().exec({"sleep", "9"}, 100ms);
    EXPECT_TRUE(t.timed_out);
    EXPECT_FALSE(t.ok());

    ExecResult s = a.client().sh("echo ok");
    EXPECT_TRUE(s.ok());
    EXPECT_EQ(s.out, "ok\n");

    a.join();
    ASSERT_EQ(a.requests.size(), 3u);
    EXPECT_EQ(a.requests[0]["op"], "exec");
    EXPECT_EQ(a.requests[0]["argv"], json({"/bin/cat", "/proc/meminfo"}));
    EXPECT_EQ(a.requests[0]["timeout_ms"], 1500);
    EXPECT_EQ(a.requests[2]["argv"], json({"/bin/sh", "-c", "echo ok"}));
    EXPECT_NE(a.requests[0]["id"], a.requests[1]["id"]);
}

TEST(AgentClient, ExecCheckedThrowsWithStderr) {
    FakeAgent a([](FakeAgent& a) {
        a.reply({{"exit_code", 1}, {"stdout", ""}, {"stderr", "no such zone"}, {"timed_out", false}});
    });
    try {
        (void)a.client().exec_checked({"false"});
        FAIL() << "no AgentError";
    } catch (const AgentError& e) {
        EXPECT_THAT(e.what(), HasSubstr("exit code 1"));
        EXPECT_THAT(e.what(), HasSubstr("no such zone"));
    }
}

TEST(AgentClient, FailureWithErrnoIsAgentError) {
    FakeAgent a([](FakeAgent& a) {
        a.reply({{"ok", false}, {"errno", EBUSY}, {"error", "write /sys/devices/system/memory/memory40/state: busy"}});
    });
    try {
        a.client().write("/sys/devices/system/memory/memory40/state", "offline");
        FAIL() << "no AgentError";
    } catch (const AgentError& e) {
        EXPECT_EQ(e.guest_errno(), EBUSY);
        EXPECT_THAT(e.what(), HasSubstr("memory40"));
    }
    a.join();
    ASSERT_EQ(a.requests.size(), 1u);
    EXPECT_EQ(a.requests[0]["op"], "write");
    EXPECT_EQ(a.requests[0]["path"], "/sys/devices/system/memory/memory40/state");
    EXPECT_EQ(a.requests[0]["data"], "offline");
}

TEST(AgentClient, FailureWithoutErrnoHasZero) {
    FakeAgent a([](FakeAgent& a) { a.reply({{"ok", false}, {"error", "unknown op"}}); });
    try {
        (void)a.client().ping();
        FAIL() << "no AgentError";
    } catch (const AgentError& e) {
        EXPECT_EQ(e.guest_errno(), 0);
        EXPECT_THAT(e.what(), HasSubstr("unknown op"));
    }
}

TEST(AgentClient, StaleAndGarbageResponsesAreSkipped) {
    FakeAgent a([](FakeAgent& a) {
        json req = a.next_request();
        a.send({{"id", 999}, {"ok", true}, {"exit_code", 7}});
        a.send({{"ok", false}, {"errno", 5}});  // no id
        a.send_raw("garbage\n");
        a.send({{"id", req["id"]}, {"ok", true}, {"exit_code", 0}, {"stdout", "right"}});
    });
    ExecResult r = a.client().exec({"true"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.out, "right");
}

TEST(AgentClient, ReadMapsMissingFilesToNullopt) {
    FakeAgent a([](FakeAgent& a) {
        a.reply({{"files", {{"/proc/meminfo", "MemTotal: 1 kB\n"}, {"/nope", nullptr}}}});
        a.reply({{"files", {{"/nope", nullptr}}}});
        a.reply({{"files", {{"/sys/x", "1\n"}}}});
    });
    auto files = a.client().read(std::vector<std::string>{"/proc/meminfo", "/nope"});
    EXPECT_EQ(files["/proc/meminfo"], "MemTotal: 1 kB\n");
    EXPECT_EQ(files["/nope"], std::nullopt);
    EXPECT_THROW((void)a.client().read(std::string("/nope")), AgentError);
    EXPECT_EQ(a.client().try_read("/sys/x"), "1\n");
    a.join();
    EXPECT_EQ(a.requests[0]["paths"], json({"/proc/meminfo", "/nope"}));
}

TEST(AgentClient, ReadFromGoesOnWhereTheLastChunkEnded) {
    FakeAgent a([](FakeAgent& a) {
        a.reply({{"data", "{\"a\":1}\n"}, {"next", 108}, {"size", 120}});
        a.reply({{"data", "x\n"}, {"next", 5}, {"size", 9}});  // next does not follow the data
        a.reply({{"data", ""}, {"next", -1}, {"size", 0}});    // not an offset
        a.reply({{"ok", false}, {"errno", ENOENT}, {"error", "open /tmp/t: No such file or directory"}});
    });
    const auto c = a.client().read_from("/tmp/t", 100);
    EXPECT_EQ(c.data, "{\"a\":1}\n");
    EXPECT_EQ(c.next, 108u);
    EXPECT_EQ(c.size, 120u);
    EXPECT_THROW((void)a.client().read_from("/tmp/t", 0), Error);
    EXPECT_THROW((void)a.client().read_from("/tmp/t", 0), Error);
    try {
        (void)a.client().read_from("/tmp/t", 0);
        ADD_FAILURE() << "no throw";
    } catch (const AgentError& e) {
        EXPECT_EQ(e.guest_errno(), ENOENT);
    }
    a.join();
    EXPECT_EQ(a.requests[0]["op"], "read_from");
    EXPECT_EQ(a.requests[0]["offset"], 100);
}

TEST(AgentClient, ListdirSpawnWaitSignalPing) {
    FakeAgent a([](FakeAgent& a) {
        a.reply({{"entries", {"memory0", "memory1", "block_size_bytes"}}});
        a.reply({{"pid", 4242}});
        a.reply({{"exited", false}});
        a.reply({{"exited", true}, {"exit_code", 2}});
        a.reply();
        a.reply({{"uptime_s", 12.5}});
    });
    EXPECT_THAT(a.client().listdir("/sys/devices/system/memory"),
                ElementsAre("memory0", "memory1", "block_size_bytes"));
    EXPECT_EQ(a.client().spawn({"stress", "-m", "1"}, "/tmp/out"), 4242);
    EXPECT_EQ(a.client().wait(4242, 10ms), std::nullopt);
    EXPECT_EQ(a.client().wait(4242, 10ms), 2);
    a.client().signal(4242, 15);
    EXPECT_DOUBLE_EQ(a.client().ping(), 12.5);
    a.join();
    ASSERT_EQ(a.requests.size(), 6u);
    EXPECT_EQ(a.requests[1]["output"], "/tmp/out");
    EXPECT_EQ(a.requests[2]["pid"], 4242);
    EXPECT_EQ(a.requests[2]["timeout_ms"], 10);
    EXPECT_EQ(a.requests[4]["signal"], 15);
    EXPECT_EQ(a.requests[5]["op"], "ping");
}

TEST(AgentClient, InvalidUtf8IsReplacedNotFatal) {
    FakeAgent a([](FakeAgent& a) { a.reply({{"exit_code", 0}}); });
    EXPECT_TRUE(a.client().exec({"echo", std::string("bad \xff byte")}).ok());
    a.join();
    EXPECT_EQ(a.requests[0]["argv"][1], "bad \xEF\xBF\xBD byte");
}

TEST(AgentClient, AgentGoingAwayIsChannelClosed) {
    FakeAgent a([](FakeAgent& a) {
        (void)a.next_request();
        a.send_raw("{\"id\":");  // half an answer, then gone
        a.close();
    });
    EXPECT_THROW((void)a.client().ping(), ChannelClosed);
}

TEST(AgentClient, TickAbortsAWaitForAnAnswer) {
    FakeAgent a([](FakeAgent& a) { (void)a.next_request(); });
    std::atomic<bool> give_up = false;
    a.client().set_tick([&] {
        if (give_up) throw Interrupted();
    });
    std::jthread stopper([&] {
        std::this_thread::sleep_for(100ms);
        give_up = true;
    });
    EXPECT_THROW((void)a.client().ping(), Interrupted);
}

TEST(AgentClient, OversizedReplyIsAnErrorAndTheNextRequestWorks) {
    FakeAgent a([](FakeAgent& a) {
        json req = a.next_request();
        a.send_raw(R"({"id":)" + req["id"].dump() + R"(,"ok":true,"files":{"/x":")" +
                   std::string(kAgentMaxResponse + 1, 'x') + "\"}}\n");
        a.reply({{"uptime_s", 1.0}});
    });
    try {
        (void)a.client().try_read("/x");
        FAIL() << "a reply over kAgentMaxResponse was accepted";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("guest agent sent a reply larger than the protocol allows"));
    }
    EXPECT_DOUBLE_EQ(a.client().ping(), 1.0);
}

TEST(AgentClient, MistypedReplyFieldsAreAnErrorNamingTheField) {
    // fuzz_agent found this: a spawn reply with a "pid" that is not an int
    // escaped as nlohmann's type_error (std::terminate in the fuzzer); an
    // exit_code of 1e300 would have been converted out of range.
    FakeAgent a([](FakeAgent& a) {
        a.reply({{"pid", "4242"}});
        a.reply({{"exit_code", 1e300}});
        a.reply({{"ok", "yes"}});
        a.reply({{"files", "MemTotal"}});
        a.reply({{"entries", {"a", 7}}});
        a.reply({{"pid", -1}});
        a.reply({{"uptime_s", 2.5}});
    });
    const auto says = [](const std::function<void()>& f) {
        try {
            f();
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no Error");
    };
    EXPECT_THAT(says([&] { (void)a.client().spawn({"x"}, "/tmp/o"); }),
                HasSubstr("reply to 'spawn' has \"pid\" \"4242\", not an int"));
    EXPECT_THAT(says([&] { (void)a.client().exec({"true"}); }), HasSubstr("\"exit_code\""));
    EXPECT_THAT(says([&] { (void)a.client().ping(); }), HasSubstr("\"ok\""));
    EXPECT_THAT(says([&] { (void)a.client().try_read("/proc/meminfo"); }), HasSubstr("\"files\""));
    EXPECT_THAT(says([&] { (void)a.client().listdir("/sys"); }), HasSubstr("\"entries\""));
    EXPECT_THAT(says([&] { (void)a.client().spawn({"x"}, "/tmp/o"); }), HasSubstr("a pid above 0"));
    EXPECT_DOUBLE_EQ(a.client().ping(), 2.5) << "the channel is still in step";
}

}  // namespace
}  // namespace memhp::lab
