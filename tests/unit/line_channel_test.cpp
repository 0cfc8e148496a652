// SPDX-License-Identifier: Apache-2.0
#include "memhp/line_channel.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <thread>

#include "memhp/files.hpp"
#include "test_util.hpp"

namespace memhp {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
using Clock = LineChannel::Clock;

// memhp and memhp-agent ignore SIGPIPE (install_stop_handlers); so does this
// binary, so writes to a closed peer fail with EPIPE instead of killing it.
class IgnoreSigpipe : public ::testing::Environment {
public:
    void SetUp() override { std::signal(SIGPIPE, SIG_IGN); }
};
[[maybe_unused]] auto* const kIgnoreSigpipe = ::testing::AddGlobalTestEnvironment(new IgnoreSigpipe);

class LineChannelTest : public ::testing::Test {
protected:
    LineChannelTest() : fds_(test::make_socketpair()), channel_(fds_.near, "test-chan"), peer_(fds_.far) {}
    static Clock::time_point in(std::chrono::milliseconds ms) { return Clock::now() + ms; }

    test::SocketPair fds_;
    LineChannel channel_;
    test::Peer peer_;
};

TEST_F(LineChannelTest, SplitsLinesAndStripsCr) {
    peer_.send("first\nsecond\r\n\nlast\n");
    EXPECT_EQ(channel_.read_line(in(1s)), "first");
    EXPECT_EQ(channel_.read_line(in(1s)), "second");
    EXPECT_EQ(channel_.read_line(in(1s)), "");
    EXPECT_EQ(channel_.read_line(in(1s)), "last");
}

TEST_F(LineChannelTest, KeepsAPartialLineAcrossReads) {
    peer_.send("hel");
    EXPECT_EQ(channel_.read_line(in(50ms)), std::nullopt);
    peer_.send("lo\r");
    EXPECT_EQ(channel_.read_line(in(50ms)), std::nullopt);
    peer_.send("\nnext");
    EXPECT_EQ(channel_.read_line(in(1s)), "hello");
    std::jthread writer([&] {
        std::this_thread::sleep_for(50ms);
        peer_.send(" part\n");
    });
    EXPECT_EQ(channel_.read_line(in(2s)), "next part");
}

TEST_F(LineChannelTest, ReturnsNulloptAtTheDeadline) {
    const auto t0 = Clock::now();
    EXPECT_EQ(channel_.read_line(in(250ms)), std::nullopt);
    const auto took = Clock::now() - t0;
    EXPECT_GE(took, 240ms);
    EXPECT_LT(took, 1s);
    EXPECT_EQ(channel_.read_line(Clock::now() - 1s), std::nullopt);  // already past
}

TEST_F(LineChannelTest, ThrowsChannelClosedWhenThePeerCloses) {
    peer_.send("complete\npartial");
    peer_.close();
    EXPECT_EQ(channel_.read_line(in(1s)), "complete");
    try {
        (void)channel_.read_line(in(1s));
        FAIL() << "no ChannelClosed";
    } catch (const ChannelClosed& e) {
        EXPECT_THAT(e.what(), HasSubstr("test-chan"));
    }
}

TEST_F(LineChannelTest, ChannelClosedArrivesPromptly) {
    std::jthread closer([&] {
        std::this_thread::sleep_for(50ms);
        peer_.close();
    });
    const auto t0 = Clock::now();
    EXPECT_THROW((void)channel_.read_line(in(5s)), ChannelClosed);
    EXPECT_LT(Clock::now() - t0, 2s);
}

TEST_F(LineChannelTest, EofIsRetryWaitsForTheDeadlineInstead) {
    channel_.set_eof_is_retry(true);
    peer_.close();
    EXPECT_EQ(channel_.read_line(in(200ms)), std::nullopt);
}

TEST_F(LineChannelTest, TickRunsWhileWaiting) {
    int ticks = 0;
    EXPECT_EQ(channel_.read_line(in(350ms), [&] { ++ticks; }), std::nullopt);
    EXPECT_GE(ticks, 3);
}

TEST_F(LineChannelTest, ExceptionFromTickPropagates) {
    struct Abort {};
    int ticks = 0;
    const auto t0 = Clock::now();
    EXPECT_THROW((void)channel_.read_line(in(10s),
                                          [&] {
                                              if (++ticks == 2) throw Abort{};
                                          }),
                 Abort);
    EXPECT_EQ(ticks, 2);
    EXPECT_LT(Clock::now() - t0, 2s);
}

TEST_F(LineChannelTest, PeerCloseGivesTheTickAChanceToExplain) {
    // Call 1 is the tick before the first poll; the next ones run after EOF
    // was seen, where the owner can name the cause (e.g. "QEMU exited").
    struct QemuExited {};
    int ticks = 0;
    peer_.close();
    EXPECT_THROW((void)channel_.read_line(in(10s),
                                          [&] {
                                              if (++ticks == 3) throw QemuExited{};
                                          }),
                 QemuExited);
}

TEST_F(LineChannelTest, WriteLineAppendsNewline) {
    channel_.write_line(R"({"a":1})", in(1s));
    channel_.write_line("", in(1s));
    EXPECT_EQ(peer_.read_line(), R"({"a":1})");
    EXPECT_EQ(peer_.read_line(), "");
}

TEST_F(LineChannelTest, WriteLineToAClosedPeerThrows) {
    peer_.close();
    EXPECT_THROW(channel_.write_line("x", in(1s)), ChannelClosed);
}

TEST_F(LineChannelTest, WriteLineTimesOutWhenThePeerDoesNotRead) {
    const std::string chunk(64 * 1024, 'x');
    EXPECT_THROW(
        {
            for (int i = 0; i < 1000; ++i) channel_.write_line(chunk, in(100ms));
        },
        Error);
}

TEST_F(LineChannelTest, MovedFromChannelIsClosed) {
    LineChannel other = std::move(channel_);
    EXPECT_FALSE(channel_.is_open());
    EXPECT_TRUE(other.is_open());
    EXPECT_THROW((void)channel_.read_line(in(10ms)), ChannelClosed);
    peer_.send("moved\n");
    EXPECT_EQ(other.read_line(in(1s)), "moved");
}

TEST_F(LineChannelTest, LineLongerThanTheCapIsRefusedAndSkipped) {
    channel_.set_max_line(1000);
    peer_.send(std::string(999, 'a') + "\r\n" + std::string(1000, 'b') + "\n");
    EXPECT_EQ(channel_.read_line(in(1s)), std::string(999, 'a'));
    EXPECT_EQ(channel_.read_line(in(1s)), std::string(1000, 'b')) << "exactly the cap is allowed";
    // One byte over, whether its newline comes with it or later.
    peer_.send(std::string(1001, 'c') + "\nafter\n");
    try {
        (void)channel_.read_line(in(1s));
        FAIL() << "a line over the cap was accepted";
    } catch (const LineTooLong& e) {
        EXPECT_THAT(e.what(), HasSubstr("test-chan"));
        EXPECT_THAT(e.what(), HasSubstr("1000 bytes"));
    }
    EXPECT_EQ(channel_.read_line(in(1s)), "after") << "the channel resynchronises at the next newline";
}

TEST_F(LineChannelTest, EndlessLineStopsAtTheCapWithoutANewline) {
    // A peer streaming one long line: the reader must fail at the cap, not
    // buffer all of it (the issue's 64 MiB guest line cost 138 MB), then
    // drop the tail as it arrives until a newline ends it.
    channel_.set_max_line(256 * 1024);
    std::jthread writer([&] {
        const std::string chunk(64 * 1024, 'x');
        for (int i = 0; i < 64; ++i) peer_.send(chunk);  // 4 MiB
        peer_.send("\nnext\n");
    });
    EXPECT_THROW((void)channel_.read_line(in(5s)), LineTooLong);
    EXPECT_EQ(channel_.read_line(in(5s)), "next");
}

TEST_F(LineChannelTest, DefaultCapIsOneMebibyte) {
    EXPECT_EQ(channel_.max_line(), std::size_t{1} << 20);
    std::jthread writer([&] { peer_.send(std::string((1 << 20) + 1, 'z') + "\nok\n"); });
    EXPECT_THROW((void)channel_.read_line(in(5s)), LineTooLong);
    EXPECT_EQ(channel_.read_line(in(5s)), "ok");
}

TEST(LineChannelConnect, ConnectsToAListeningSocket) {
    TempDir dir;
    const auto path = (dir.path() / "s.sock").string();
    int srv = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(srv, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(srv, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(srv, 1), 0);
    auto ch = LineChannel::connect_unix(path, 1s);
    int conn = ::accept4(srv, nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(conn, 0);
    test::Peer peer(conn);
    peer.send("over unix\n");
    EXPECT_EQ(ch.read_line(Clock::now() + 1s), "over unix");
    ::close(srv);
}

TEST(LineChannelConnect, TimesOutWithTheSocketPath) {
    TempDir dir;
    const auto path = (dir.path() / "missing.sock").string();
    int ticks = 0;
    const auto t0 = Clock::now();
    try {
        (void)LineChannel::connect_unix(path, 150ms, [&] { ++ticks; });
        FAIL() << "connected to nothing";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr(path));
    }
    EXPECT_GT(ticks, 0);
    EXPECT_LT(Clock::now() - t0, 1s);
}

}  // namespace
}  // namespace memhp
