// SPDX-License-Identifier: Apache-2.0
// collector::Session on a fake probe backend: the records its poll() hands
// over reach every sink as Operations, the loop stops when asked or on a
// failed poll and drains once more, and the config comes from the sysfs
// tree under the session's root.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "fake_backend.hpp"
#include "memhp/collector/session.hpp"
#include "memhp/files.hpp"

namespace memhp::collector {
namespace {

namespace fs = std::filesystem;
using test::fake_session_options;
using test::FakeBackend;

constexpr std::uint64_t kBlockPages = 32768;    // 128 MiB blocks
constexpr std::uint64_t kBootPfn = 0x10000;     // block 2: node 0
constexpr std::uint64_t kHotPfn = 40 * 0x8000;  // block 40: node 1

class OneNode : public NodeResolver {
public:
    int node_of_pfn(std::uint64_t) override { return 1; }
};

class Recorder : public OperationSink {
public:
    void on_operation(const Operation& op) override { ops.push_back(op); }
    std::vector<Operation> ops;
};

// A sysfs tree: 128 MiB blocks, block 2 on node 0 and block 40 on node 1,
// and memmap_on_memory as given (none: the parameter is absent).
class FakeSysfs {
public:
    explicit FakeSysfs(const char* memmap_on_memory, const char* block_size = "8000000\n") {
        const auto mem = dir_.path() / "sys/devices/system/memory";
        fs::create_directories(mem / "memory2/node0");
        fs::create_directories(mem / "memory40/node1");
        write_file_atomic(mem / "block_size_bytes", block_size);
        if (memmap_on_memory) {
            const auto params = dir_.path() / "sys/module/memory_hotplug/parameters";
            fs::create_directories(params);
            write_file_atomic(params / "memmap_on_memory", memmap_on_memory);
        }
    }
    [[nodiscard]] const fs::path& root() const { return dir_.path(); }

private:
    TempDir dir_{"memhp-session"};
};

memhp_event event(std::uint32_t type, std::uint64_t op_id) {
    memhp_event ev;
    std::memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.op_id = op_id;
    ev.tid = 77;
    ev.nid = -1;
    return ev;
}

memhp_event memmap_page(std::uint64_t op_id, std::uint64_t pfn) {
    auto ev = event(MEMHP_EV_PAGE_ALLOC, op_id);
    ev.pfn = pfn;
    ev.order = 9;
    ev.op_type = MEMHP_EV_ADD;
    return ev;
}

memhp_event phase_end(std::uint32_t type, std::uint64_t op_id, int nid) {
    auto ev = event(type, op_id);
    ev.nid = nid;
    ev.start_pfn = kHotPfn;
    ev.nr_pages = kBlockPages;
    ev.duration_ns = 4'000'000;
    std::strncpy(ev.zone, "Movable", sizeof ev.zone);
    return ev;
}

// Stop once the backend has been polled `n` times.
std::function<bool()> after_polls(FakeBackend*& b, std::size_t n) {
    return [&b, n] { return b->timeouts.size() >= n; };
}

TEST(Session, RecordsReachEverySinkAsOperations) {
    FakeSysfs sysfs("Y\n");
    FakeBackend* b = nullptr;
    Recorder first, second;
    auto opts = fake_session_options(&b, nullptr, sysfs.root());
    opts.sinks = {&first};
    Session session(std::move(opts));
    session.add_sink(&second);
    ASSERT_NE(b, nullptr);
    b->script({memmap_page(1, kBootPfn), phase_end(MEMHP_EV_ADD, 1, 1)});
    b->script({phase_end(MEMHP_EV_ONLINE, 2, 1)});
    EXPECT_EQ(session.run({.stop = after_polls(b, 2)}), 0);

    for (const auto* sink : {&first, &second}) {
        ASSERT_EQ(sink->ops.size(), 2u);
        const auto& add = sink->ops[0];
        EXPECT_EQ(add.phase, Phase::Add);
        EXPECT_EQ(add.nid, 1);
        EXPECT_EQ(add.nr_pages, kBlockPages);
        EXPECT_EQ(add.memmap.buddy_pages, 512u);
        EXPECT_EQ(add.memmap.remote_pages, 512u) << "block 2 is on node 0 in the fake sysfs, the add on node 1";
        EXPECT_TRUE(add.memmap_on_memory_unused) << "memmap_on_memory=Y came from the fake sysfs";
        EXPECT_EQ(sink->ops[1].phase, Phase::Online);
        EXPECT_EQ(sink->ops[1].zone, "Movable");
    }
    EXPECT_EQ(session.stats().events, 3u);
    EXPECT_EQ(session.events(), 3u);
}

TEST(Session, ConfigIsReadFromTheSysfsRoot) {
    FakeSysfs with("force\n", "10000000\n");
    FakeBackend* b = nullptr;
    Session on(fake_session_options(&b, nullptr, with.root()));
    EXPECT_EQ(on.config().memmap_on_memory, "force");
    EXPECT_TRUE(on.config().aggregator.memmap_on_memory_enabled);
    EXPECT_EQ(on.config().aggregator.block_size_bytes, 256u << 20);

    FakeSysfs without(nullptr);
    Recorder sink;
    auto opts = fake_session_options(&b, nullptr, without.root());
    opts.sinks = {&sink};
    Session off(std::move(opts));
    EXPECT_EQ(off.config().memmap_on_memory, std::nullopt) << "a kernel without the parameter";
    EXPECT_FALSE(off.config().aggregator.memmap_on_memory_enabled);
    b->script({phase_end(MEMHP_EV_ADD, 1, 1)});
    EXPECT_EQ(off.run({.stop = after_polls(b, 1)}), 0);
    ASSERT_EQ(sink.ops.size(), 1u);
    EXPECT_FALSE(sink.ops[0].memmap_on_memory_unused);
}

TEST(Session, StopsWhenAskedAndDrainsOnce) {
    FakeBackend* b = nullptr;
    Recorder sink;
    auto opts = fake_session_options(&b, std::make_unique<OneNode>());
    opts.sinks = {&sink};
    Session session(std::move(opts));
    b->script({});
    b->script({});
    b->script({phase_end(MEMHP_EV_OFFLINE, 5, 1)});  // arrives in the final drain
    int each = 0;
    EXPECT_EQ(session.run({.stop = after_polls(b, 2), .each = [&each] { ++each; }, .poll_timeout_ms = 50}), 0);
    EXPECT_EQ(b->timeouts, (std::vector<int>{50, 50, 0})) << "two polls, then a drain that does not wait";
    EXPECT_EQ(each, 2);
    ASSERT_EQ(sink.ops.size(), 1u);
    EXPECT_EQ(sink.ops[0].phase, Phase::Offline);
}

TEST(Session, AFailedPollEndsTheLoopWithItsError) {
    FakeBackend* b = nullptr;
    Session session(fake_session_options(&b, std::make_unique<OneNode>()));
    b->script({}, -EINTR);  // a signal: keep going
    b->script({phase_end(MEMHP_EV_ADD, 1, 1)}, -EIO);
    EXPECT_EQ(session.run({.stop = [] { return false; }}), -EIO);
    EXPECT_EQ(b->timeouts.size(), 3u) << "-EINTR, -EIO, then the final drain";
    EXPECT_EQ(session.events(), 1u);
}

TEST(Session, OptionsReachTheBackendAfterThePreflight) {
    FakeBackend* b = nullptr;
    auto opts = fake_session_options(&b, std::make_unique<OneNode>());
    opts.probes.test_miss_online_exits = 3;
    opts.probes.mode = AttachMode::Kprobe;
    std::vector<std::string> order;
    opts.preflight = [&order] { order.push_back("preflight"); };
    Session session(std::move(opts));
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(order, std::vector<std::string>{"preflight"});
    EXPECT_EQ(b->options.test_miss_online_exits, 3u);
    EXPECT_EQ(b->options.mode, AttachMode::Kprobe);
    EXPECT_GE(session.attach_ms(), 0.0);
    EXPECT_EQ(&session.backend(), b);

    FakeBackend* never = nullptr;
    auto failing = fake_session_options(&never, std::make_unique<OneNode>());
    failing.preflight = [] { throw std::runtime_error("no BTF"); };
    EXPECT_THROW(Session{std::move(failing)}, std::runtime_error);
    EXPECT_EQ(never, nullptr) << "nothing is attached when the preflight fails";
}

TEST(Session, ProbeOptionsFromTheCallersEnvironment) {
    std::map<std::string, const char*> env = {{"MEMHP_PROBES", "fentry"}, {"MEMHP_TEST_MISS_ONLINE_EXITS", "7"}};
    auto lookup = [&env](const char* name) -> const char* {
        const auto it = env.find(name);
        return it == env.end() ? nullptr : it->second;
    };
    auto o = probe_options_from(lookup);
    EXPECT_FALSE(o.use_tracepoints);
    EXPECT_FALSE(o.refuse_fentry);
    EXPECT_EQ(o.test_miss_online_exits, 7u);
    env["MEMHP_TEST_REFUSE_FENTRY"] = "1";
    env["MEMHP_TEST_MISS_ONLINE_EXITS"] = "1001";
    EXPECT_THROW((void)probe_options_from(lookup), Error);
    env.erase("MEMHP_TEST_MISS_ONLINE_EXITS");
    EXPECT_TRUE(probe_options_from(lookup).refuse_fentry);
    EXPECT_TRUE(probe_options_from([](const char*) -> const char* { return nullptr; }).use_tracepoints);
}

}  // namespace
}  // namespace memhp::collector
