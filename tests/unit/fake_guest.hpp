// SPDX-License-Identifier: Apache-2.0
#pragma once
// A lab guest without a VM: a lab::Machine whose QMP and agent clients talk
// over socketpairs to two server threads that model a guest's memory
// hot(un)plug. QMP: object-add/device_add of pc-DIMMs (their blocks appear
// in /sys/devices/system/memory), device_del (DEVICE_DELETED once every
// block is offline), virtio-mem requested-size/size. The agent: reads of
// sysfs and /proc (block state, valid_zones, per-node meminfo, meminfo,
// vmstat, buddyinfo), writes of block states (offline may fail with EBUSY),
// listdir, exec, and spawn/wait/signal of `memhp trace --json` and
// memhp-hog. The spawned tracer is modelled too: every add, online,
// offline and remove appends its Operation record (docs/trace-json.md) to
// the tracer's output file, so lab::GuestTrace reads real NDJSON.
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "memhp/lab/guest.hpp"
#include "memhp/lab/machine.hpp"

namespace memhp::test {

// How the modelled kernel behaves; set before the guest starts.
struct FakeKernel {
    std::uint64_t block_size = std::uint64_t{128} << 20;
    bool offline_ebusy = false;  // every offline write fails with EBUSY (unmovable pages)
    int add_errno = 0;           // add_memory() fails with -add_errno: no blocks appear
    int die_at_device_add = 0;   // the guest dies (both channels close) at its Nth device_add; 0: never
    // Probe times of the modelled tracer, per 128M block.
    std::uint64_t add_ns = 4'000'000, altmap_add_ns = 3'000'000, online_ns = 2'000'000, offline_ns = 5'000'000,
                  remove_ns = 1'000'000;
};

// The memmap one memory block needs (64 bytes per 4 KiB page): 2 MiB a 128M block.
inline constexpr std::uint64_t kFakeMemmapBytes = std::uint64_t{2} << 20;

// The modelled guest's state, shared by its two server threads and the test.
class GuestModel {
public:
    GuestModel(const lab::GuestConfig& cfg, FakeKernel k);

    // The server side: one JSON request in, one JSON reply out (QMP may
    // queue events in `events`).
    nlohmann::json qmp(const nlohmann::json& req, std::vector<nlohmann::json>& events);
    nlohmann::json agent(const nlohmann::json& req);

    // What the test inspects.
    [[nodiscard]] std::size_t blocks() const;
    [[nodiscard]] std::size_t blocks_online() const;
    [[nodiscard]] int device_adds() const;
    [[nodiscard]] bool dead() const;
    [[nodiscard]] std::string policy() const;
    [[nodiscard]] const lab::GuestConfig& config() const { return cfg_; }
    [[nodiscard]] std::string release() const;
    // The trace records written so far (every tracer's output).
    [[nodiscard]] std::vector<nlohmann::json> records() const;

private:
    struct Block {
        int node = 0;
        std::string state = "offline";  // "online" once onlined, whatever the zone
        std::string zone;               // "Movable" or "Normal" while online
        bool hot = false;               // hot-added (its memmap is counted)
    };
    struct Dimm {
        std::string backend;
        std::uint64_t addr = 0, size = 0;
        int node = 0;
        std::vector<int> blocks;
    };
    struct VirtioMem {
        std::string id;
        int node = 1;
        std::uint64_t base = 0, size = 0;
        std::vector<int> blocks;
    };
    struct Process {
        std::string kind;  // "trace", "hog", "other"
        std::string output;
        std::optional<int> exit_code;
    };

    nlohmann::json qmp_device(const std::string& cmd, const nlohmann::json& a, std::vector<nlohmann::json>& events);
    nlohmann::json device_add(const nlohmann::json& a);
    nlohmann::json device_del(const std::string& id, std::vector<nlohmann::json>& events);
    nlohmann::json qom(const std::string& cmd, const nlohmann::json& a);
    void resize_virtio(VirtioMem& v, std::uint64_t requested);
    void plug_blocks(std::uint64_t addr, std::uint64_t bytes, int node, std::vector<int>& out, bool per_block);
    nlohmann::json read_files(const nlohmann::json& paths);
    std::optional<std::string> file(const std::string& path) const;
    std::optional<std::string> block_file(int b, const std::string& name) const;
    nlohmann::json write(const std::string& path, const std::string& data);
    nlohmann::json write_state(int b, const std::string& data);
    nlohmann::json listdir(const std::string& path) const;
    nlohmann::json spawn(const nlohmann::json& argv, const std::string& output);
    nlohmann::json signal(int pid, int sig);
    nlohmann::json exec(const nlohmann::json& argv) const;
    std::string meminfo(std::optional<int> node) const;
    std::string vmstat() const;
    nlohmann::json op(const std::string& phase, std::uint64_t pfn, std::uint64_t pages, int node, std::uint64_t ns);
    void emit(const nlohmann::json& record);
    [[nodiscard]] bool memmap_on_memory() const;

    lab::GuestConfig cfg_;
    FakeKernel k_;
    mutable std::mutex mu_;
    std::map<int, Block> blocks_;
    std::map<std::string, Dimm> dimms_;
    std::map<std::string, std::uint64_t> backends_;
    std::vector<VirtioMem> vmem_;
    std::map<int, Process> procs_;
    std::map<std::string, std::string> files_;  // what spawned processes wrote
    std::vector<nlohmann::json> records_;
    std::uint64_t next_addr_ = std::uint64_t{4} << 30;
    std::string policy_;
    int next_pid_ = 100;
    std::uint64_t next_op_ = 1, clock_ns_ = 1'000'000'000;
    int device_adds_ = 0;
    bool dead_ = false;
};

// A lab::Machine over a GuestModel. Starting it starts the two servers;
// wait_ready() handshakes QMP and waits for the agent's hello, as a real
// guest's does.
class FakeGuest final : public lab::Machine {
public:
    FakeGuest(const lab::GuestConfig& cfg, FakeKernel k = {});
    ~FakeGuest() override;

    [[nodiscard]] lab::AgentClient& agent() override { return agent_; }
    [[nodiscard]] lab::QmpClient& qmp() override { return qmp_; }
    [[nodiscard]] const lab::GuestConfig& config() const override { return model_->config(); }
    [[nodiscard]] const lab::KernelImage& kernel() const override { return kernel_; }
    void wait_ready() override;
    [[nodiscard]] std::string release() const override { return model_->release(); }
    [[nodiscard]] const std::string& online_policy() const override { return policy_; }
    [[nodiscard]] double boot_seconds() const override { return 1.5; }
    [[nodiscard]] int qemu_pid() const override { return 4242; }
    [[nodiscard]] std::string qemu_cmdline() const override { return "fake-qemu -m 1G"; }
    [[nodiscard]] std::string console_tail(std::size_t n = 20) const override;
    void check_alive() override;
    [[nodiscard]] bool alive() override { return !model_->dead(); }
    void shutdown() override;

    [[nodiscard]] std::shared_ptr<GuestModel> model() const { return model_; }

private:
    void serve_qmp(int fd);
    void serve_agent(int fd);
    std::shared_ptr<GuestModel> model_;
    lab::KernelImage kernel_;
    std::string policy_;
    lab::QmpClient qmp_;
    lab::AgentClient agent_;
    std::atomic<bool> stop_{false};
    std::vector<std::jthread> servers_;  // last: joined first
};

}  // namespace memhp::test
