// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/qmp.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "memhp/lab/memory.hpp"
#include "test_util.hpp"

namespace memhp::lab {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr const char* kGreeting =
    R"({"QMP": {"version": {"qemu": {"micro": 2, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, )"
    R"("capabilities": ["oob"]}})";

// A fake QEMU: the far end of a socketpair, scripted from a thread. Requests
// it reads are recorded for the test to inspect after join().
class FakeQemu : public test::JsonPeer {
public:
    FakeQemu() : FakeQemu(test::make_socketpair()) {}

    QmpClient client(LineChannel::Tick tick = {}) { return QmpClient(LineChannel(near_, "qmp"), std::move(tick)); }
    // Reads a request and answers it with {"return": ret}.
    void answer(const json& ret) {
        json req = next_request();
        if (!req.is_null()) send({{"return", ret}, {"id", req["id"]}});
    }
    void greet_and_accept() {
        send_raw(std::string(kGreeting) + "\n");
        answer(json::object());
    }

private:
    explicit FakeQemu(test::SocketPair fds) : JsonPeer(fds.far), near_(fds.near) {}
    int near_;  // handed to the client, which owns it
};

// Handshake done on both sides; `script` then plays QEMU's part on a thread.
struct Session {
    explicit Session(std::function<void(FakeQemu&)> script)
        : server([this, script = std::move(script)] {
              qemu.greet_and_accept();
              script(qemu);
          }),
          client(qemu.client()) {
        greeting = client.handshake(2000ms);
    }
    // Declared in destruction order: the client closes its end first, so a
    // server still reading sees EOF; then the thread is joined.
    FakeQemu qemu;
    std::jthread server;
    QmpClient client;
    json greeting;
    void join() {
        if (server.joinable()) server.join();
    }
};

TEST(Qmp, HandshakeReturnsTheGreetingAndNegotiates) {
    FakeQemu qemu;
    std::jthread server([&] { qemu.greet_and_accept(); });
    auto client = qemu.client();
    json qmp = client.handshake(2000ms);
    server.join();
    EXPECT_EQ(qmp["version"]["qemu"]["major"], 7);
    ASSERT_EQ(qemu.requests.size(), 1u);
    EXPECT_EQ(qemu.requests[0]["execute"], "qmp_capabilities");
    EXPECT_FALSE(qemu.requests[0].contains("arguments"));
    EXPECT_TRUE(qemu.requests[0]["id"].is_string());
    EXPECT_TRUE(client.connected());
}

TEST(Qmp, HandshakeRejectsSomethingElse) {
    FakeQemu qemu;
    qemu.send({{"hello", "world"}});
    auto client = qemu.client();
    try {
        (void)client.handshake(1000ms);
        FAIL() << "accepted a non-greeting";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("greeting"));
    }
}

TEST(Qmp, HandshakeTimesOut) {
    FakeQemu qemu;
    auto client = qemu.client();
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW((void)client.handshake(200ms), Error);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST(Qmp, ExecuteSendsCommandAndArgumentsAndReturnsReturn) {
    Session s([](FakeQemu& q) {
        q.answer(json::object());
        q.answer(json::array({{{"type", "dimm"}, {"data", {{"id", "memhp-dimm0"}, {"addr", 4294967296}}}}}));
    });
    json r1 = s.client.execute("object-add", {{"qom-type", "memory-backend-ram"}, {"id", "mem0"}, {"size", 1 << 27}});
    json r2 = s.client.execute("query-memory-devices");
    s.join();
    EXPECT_EQ(r1, json::object());
    ASSERT_TRUE(r2.is_array());
    EXPECT_EQ(r2[0]["data"]["addr"], 4294967296);

    ASSERT_EQ(s.qemu.requests.size(), 3u);  // qmp_capabilities, object-add, query-memory-devices
    const json& add = s.qemu.requests[1];
    EXPECT_EQ(add["execute"], "object-add");
    EXPECT_EQ(add["arguments"], (json{{"qom-type", "memory-backend-ram"}, {"id", "mem0"}, {"size", 1 << 27}}));
    EXPECT_EQ(s.qemu.requests[2]["execute"], "query-memory-devices");
    EXPECT_FALSE(s.qemu.requests[2].contains("arguments"));
    // Every request has its own id.
    EXPECT_NE(s.qemu.requests[0]["id"], s.qemu.requests[1]["id"]);
    EXPECT_NE(s.qemu.requests[1]["id"], s.qemu.requests[2]["id"]);
}

TEST(Qmp, ErrorAnswerBecomesQmpErrorWithTheClass) {
    Session s([](FakeQemu& q) {
        json req = q.next_request();
        q.send(
            {{"error", {{"class", "DeviceNotFound"}, {"desc", "Device 'memhp-dimm9' not found"}}}, {"id", req["id"]}});
    });
    try {
        (void)s.client.execute("device_del", {{"id", "memhp-dimm9"}});
        FAIL() << "no QmpError";
    } catch (const QmpError& e) {
        EXPECT_EQ(e.error_class(), "DeviceNotFound");
        EXPECT_THAT(e.what(), HasSubstr("device_del"));
        EXPECT_THAT(e.what(), HasSubstr("Device 'memhp-dimm9' not found"));
    }
}

TEST(Qmp, ErrorWithoutClassIsGenericError) {
    Session s([](FakeQemu& q) {
        json req = q.next_request();
        q.send({{"error", json::object()}, {"id", req["id"]}});
    });
    try {
        (void)s.client.execute("device_add", {{"driver", "pc-dimm"}});
        FAIL() << "no QmpError";
    } catch (const QmpError& e) {
        EXPECT_EQ(e.error_class(), "GenericError");
    }
}

TEST(Qmp, StaleAnswersAreSkipped) {
    Session s([](FakeQemu& q) {
        json req = q.next_request();
        q.send({{"return", "stale"}, {"id", "memhp-999"}});
        q.send({{"return", "no id"}});
        q.send({{"return", "fresh"}, {"id", req["id"]}});
    });
    EXPECT_EQ(s.client.execute("query-status"), "fresh");
}

TEST(Qmp, EventsBeforeTheAnswerAreQueuedForWaitEvent) {
    Session s([](FakeQemu& q) {
        json req = q.next_request();
        q.send({{"event", "DEVICE_DELETED"},
                {"data", {{"device", "memhp-dimm0"}, {"path", "/machine/peripheral/memhp-dimm0"}}}});
        q.send({{"event", "ACPI_DEVICE_OST"}, {"data", {{"info", {{"source", 3}}}}}});
        q.send({{"event", "DEVICE_DELETED"}, {"data", {{"device", "memhp-dimm1"}}}});
        q.send({{"return", json::object()}, {"id", req["id"]}});
    });
    (void)s.client.execute("device_del", {{"id", "memhp-dimm1"}});
    s.join();
    ASSERT_EQ(s.client.pending_events().size(), 3u);

    auto device_is = [](std::string id) { return [id](const json& data) { return data.value("device", "") == id; }; };
    auto ev = s.client.wait_event("DEVICE_DELETED", device_is("memhp-dimm1"), 0ms);
    ASSERT_TRUE(ev);
    EXPECT_EQ((*ev)["data"]["device"], "memhp-dimm1");
    EXPECT_EQ(s.client.pending_events().size(), 2u);

    ev = s.client.wait_event("DEVICE_DELETED", {}, 0ms);  // no predicate: any of that name
    ASSERT_TRUE(ev);
    EXPECT_EQ((*ev)["data"]["device"], "memhp-dimm0");
    ASSERT_EQ(s.client.pending_events().size(), 1u);
    EXPECT_EQ(s.client.pending_events().front()["event"], "ACPI_DEVICE_OST");

    EXPECT_EQ(s.client.wait_event("DEVICE_DELETED", {}, 0ms), std::nullopt);  // consumed
}

TEST(Qmp, WaitEventReadsLaterEventsAndQueuesOthers) {
    Session s([](FakeQemu& q) {
        std::this_thread::sleep_for(50ms);
        q.send({{"event", "DEVICE_DELETED"}, {"data", {{"device", "other"}}}});
        q.send_raw("not json at all\n\n");
        q.send({{"return", "unsolicited"}});
        q.send({{"event", "DEVICE_DELETED"}, {"data", {{"device", "memhp-dimm3"}}}});
    });
    auto ev = s.client.wait_event(
        "DEVICE_DELETED", [](const json& d) { return d.value("device", "") == "memhp-dimm3"; }, 2000ms);
    ASSERT_TRUE(ev);
    EXPECT_EQ((*ev)["data"]["device"], "memhp-dimm3");
    ASSERT_EQ(s.client.pending_events().size(), 1u);
    EXPECT_EQ(s.client.pending_events().front()["data"]["device"], "other");
}

TEST(Qmp, WaitEventTimesOut) {
    Session s([](FakeQemu& q) { q.send({{"event", "RESUME"}}); });
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(s.client.wait_event("DEVICE_DELETED", {}, 250ms), std::nullopt);
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, 240ms);
    EXPECT_LT(took, 2s);
    ASSERT_EQ(s.client.pending_events().size(), 1u);
    EXPECT_EQ(s.client.pending_events().front()["event"], "RESUME");
}

TEST(Qmp, MalformedAnswerIsAnError) {
    Session s([](FakeQemu& q) {
        (void)q.next_request();
        q.send_raw("{\"return\": {\n");
    });
    try {
        (void)s.client.execute("query-status");
        FAIL() << "accepted malformed JSON";
    } catch (const QmpError&) {
        FAIL() << "malformed JSON is not a QMP error answer";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("malformed"));
    }
}

TEST(Qmp, AnswerWithoutReturnOrErrorIsAnError) {
    Session s([](FakeQemu& q) {
        json req = q.next_request();
        q.send({{"id", req["id"]}});
    });
    EXPECT_THROW((void)s.client.execute("query-status"), Error);
}

TEST(Qmp, ExecuteTimesOut) {
    Session s([](FakeQemu& q) { (void)q.next_request(); });
    const auto t0 = std::chrono::steady_clock::now();
    try {
        (void)s.client.execute("query-status", nullptr, 200ms);
        FAIL() << "no timeout";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("query-status"));
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST(Qmp, QemuGoingAwayIsChannelClosed) {
    Session s([](FakeQemu& q) {
        (void)q.next_request();
        q.close();
    });
    EXPECT_THROW((void)s.client.execute("quit"), ChannelClosed);
}

TEST(Qmp, TickExceptionAbortsAWait) {
    struct QemuDied {};
    FakeQemu qemu;
    std::jthread server([&] { qemu.greet_and_accept(); });
    bool dead = false;
    auto client = qemu.client([&] {
        if (dead) throw QemuDied{};
    });
    (void)client.handshake(2000ms);
    server.join();
    dead = true;
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW((void)client.wait_event("DEVICE_DELETED", {}, 10000ms), QemuDied);
    EXPECT_THROW((void)client.execute("query-status", nullptr, 10000ms), QemuDied);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

}  // namespace
}  // namespace memhp::lab

// ---- virtio-mem over QMP -------------------------------------------------------------

namespace memhp::lab {
namespace {

TEST(VirtioMemQmp, RequestIsAQomSetOfRequestedSize) {
    Session s([](FakeQemu& q) { q.answer(json::object()); });
    virtio_mem_request(s.client, "vmem0", std::uint64_t{512} << 20);
    s.join();
    ASSERT_EQ(s.qemu.requests.size(), 2u);
    EXPECT_EQ(s.qemu.requests[1]["execute"], "qom-set");
    EXPECT_EQ(s.qemu.requests[1]["arguments"],
              (json{{"path", "vmem0"}, {"property", "requested-size"}, {"value", std::uint64_t{512} << 20}}));
}

TEST(VirtioMemQmp, PluggedIsTheDevicesSize) {
    Session s([](FakeQemu& q) { q.answer(std::uint64_t{3} << 27); });
    EXPECT_EQ(virtio_mem_plugged(s.client, "vmem0"), std::uint64_t{3} << 27);
    s.join();
    EXPECT_EQ(s.qemu.requests[1]["execute"], "qom-get");
    EXPECT_EQ(s.qemu.requests[1]["arguments"], (json{{"path", "vmem0"}, {"property", "size"}}));
}

TEST(VirtioMemQmp, ASizeThatIsNotANumberIsAnError) {
    for (const json& bad : {json("big"), json(-1), json(1.5), json::object()}) {
        Session s([bad](FakeQemu& q) { q.answer(bad); });
        try {
            (void)virtio_mem_plugged(s.client, "vmem0");
            ADD_FAILURE() << "accepted " << bad.dump();
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr("not a size in bytes"));
        }
        s.join();
    }
}

TEST(VirtioMemQmp, AnUnknownDeviceIsTheQmpError) {
    Session s([](FakeQemu& q) {
        json req = q.next_request();
        q.send({{"error", {{"class", "DeviceNotFound"}, {"desc", "Device 'vmem9' not found"}}}, {"id", req["id"]}});
    });
    EXPECT_THROW(virtio_mem_request(s.client, "vmem9", 0), QmpError);
    s.join();
}

TEST(Qmp, OversizedLineFromQemuIsAnErrorNotUnboundedMemory) {
    // The issue: a 64 MiB line cost the host 138 MB. Now the client gives up
    // at kQmpMaxLine with an error that names QMP.
    Session s([](FakeQemu& q) {
        (void)q.next_request();
        q.send_raw(R"({"return": ")" + std::string(QmpClient::kQmpMaxLine + 10, 'a') + "\"}\n");
    });
    try {
        (void)s.client.execute("query-memory-devices");
        FAIL() << "an oversized answer was accepted";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("QMP: QEMU sent more than a message may hold"));
        EXPECT_THAT(e.what(), HasSubstr(std::to_string(QmpClient::kQmpMaxLine) + " bytes"));
    }
}

TEST(Qmp, AnEventStormKeepsOnlyTheNewestEvents) {
    // 200,000 unsolicited events cost 169 MB in the issue: the queue is bounded
    // and counts what it let go.
    constexpr std::size_t storm = QmpClient::kMaxPendingEvents + 500;
    Session s([](FakeQemu& q) {
        json req = q.next_request();
        std::string burst;
        for (std::size_t i = 0; i < storm; ++i)
            burst += json{{"event", "ACPI_DEVICE_OST"}, {"data", {{"n", i}}}}.dump() + "\n";
        q.send_raw(burst);
        q.send({{"return", json::object()}, {"id", req["id"]}});
    });
    (void)s.client.execute("device_del", {{"id", "memhp-dimm0"}});
    s.join();
    EXPECT_EQ(s.client.pending_events().size(), QmpClient::kMaxPendingEvents);
    EXPECT_EQ(s.client.dropped_events(), 500u);
    EXPECT_EQ(s.client.pending_events().front()["data"]["n"], 500) << "the oldest went first";
}

}  // namespace
}  // namespace memhp::lab
