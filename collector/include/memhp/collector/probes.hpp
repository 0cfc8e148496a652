#pragma once
// Loads hotplug.bpf.c, attaches what this kernel allows, and hands ring-buffer
// records to a callback. Programs whose target is missing or cannot be traced
// are reported and skipped: running degraded beats refusing to run.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

struct hotplug;  // the generated skeleton
struct bpf_link;
struct ring_buffer;

namespace memhp::collector {

class TracepointProbes;  // tp_probes.hpp

struct AttachStatus {
    std::string program;  // BPF program name
    std::string target;   // kernel function or tracepoint
    std::string mode;     // "fentry", "fexit", "tp_btf"
    bool attached = false;
    bool required = false;
    std::string reason;  // why not, when not attached
};

class HotplugProbes {
public:
    using Handler = std::function<void(std::span<const std::uint8_t>)>;
    // Throws BpfError (with a remedy) when the prerequisites are missing or a
    // required program (the add path) cannot attach.
    explicit HotplugProbes(Handler handler);
    ~HotplugProbes();
    HotplugProbes(const HotplugProbes&) = delete;
    HotplugProbes& operator=(const HotplugProbes&) = delete;

    [[nodiscard]] const std::vector<AttachStatus>& attach_report() const { return report_; }
    // True when vmemmap population is timed at vmemmap_populate itself.
    [[nodiscard]] bool populate_direct() const { return populate_direct_; }
    // Consumes ready records, waiting up to timeout_ms; returns how many, or
    // -errno (-EINTR on a signal is a normal return).
    int poll(int timeout_ms);
    [[nodiscard]] std::uint64_t dropped_events() const;
    // One line per program: "fentry add_memory_resource: attached".
    [[nodiscard]] std::string describe() const;
    // Attached programs as (name, fd): the exporter reads their run time.
    [[nodiscard]] std::vector<std::pair<std::string, int>> program_fds() const;
    // Which probe path is active: "memory_hotplug tracepoints" when the
    // kernel has kernel-patches/' events (MEMHP_PROBES=fentry forces the
    // fentry path), else "fentry/fexit".
    [[nodiscard]] std::string path() const;
    // How vmemmap population is timed, for the attach message.
    [[nodiscard]] std::string populate_timing() const;

private:
    static int on_record(void* ctx, void* data, std::size_t size);
    struct SkelDeleter {
        void operator()(hotplug* s) const;
    };
    struct LinkDeleter {
        void operator()(bpf_link* l) const;
    };
    struct RingDeleter {
        void operator()(ring_buffer* r) const;
    };
    Handler handler_;
    std::unique_ptr<hotplug, SkelDeleter> skel_;
    std::vector<std::unique_ptr<bpf_link, LinkDeleter>> links_;
    std::unique_ptr<ring_buffer, RingDeleter> ring_;
    std::vector<AttachStatus> report_;
    bool populate_direct_ = false;
    std::unique_ptr<TracepointProbes> tp_;  // set when the tracepoint path is active
};

}  // namespace memhp::collector
