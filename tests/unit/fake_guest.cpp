// SPDX-License-Identifier: Apache-2.0
#include "fake_guest.hpp"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "memhp/files.hpp"
#include "memhp/lab/agent_protocol.hpp"
#include "memhp/lab/guest_trace.hpp"
#include "memhp/lab/memory.hpp"
#include "memhp/line_channel.hpp"
#include "test_util.hpp"

namespace memhp::test {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

const std::string kMem = "/sys/devices/system/memory";
const std::string kNode = "/sys/devices/system/node";
constexpr std::uint64_t kPage = 4096;

json error_reply(const std::string& what, int err) { return {{"ok", false}, {"error", what}, {"errno", err}}; }

// "/sys/devices/system/memory/memory40/state" -> 40 and "state"; -1 otherwise.
int block_of(const std::string& path, std::string& name) {
    if (!path.starts_with(kMem + "/memory")) return -1;
    const auto rest = path.substr(kMem.size() + 1);
    const auto slash = rest.find('/');
    if (slash == std::string::npos) return -1;
    name = rest.substr(slash + 1);
    return lab::parse_block_name(rest.substr(0, slash));
}

bool ends_with(const std::string& s, const std::string& tail) { return s.size() >= tail.size() && s.ends_with(tail); }

}  // namespace

GuestModel::GuestModel(const lab::GuestConfig& cfg, FakeKernel k) : cfg_(cfg), k_(k) {
    std::uint64_t addr = 0;
    for (std::size_t n = 0; n < cfg_.node_mem.size(); ++n)
        for (std::uint64_t b = 0; b < cfg_.node_mem[n] / k_.block_size; ++b, addr += k_.block_size)
            blocks_[static_cast<int>(addr / k_.block_size)] = {static_cast<int>(n), "online", "Normal", false};
    for (std::size_t i = 0; i < cfg_.virtio_mem.size(); ++i)
        vmem_.push_back({lab::virtio_mem_id(i), cfg_.virtio_mem[i].node, (std::uint64_t{64} << 30) * (i + 1), 0, {}});
    policy_ = cfg_.online == lab::OnlineMode::Auto ? "online" : "offline";
}

std::string GuestModel::release() const { return cfg_.kernel + ".0-fake-amd64"; }

bool GuestModel::memmap_on_memory() const { return cfg_.memmap_on_memory.value_or(false); }

// ---- QMP ---------------------------------------------------------------------

json GuestModel::qmp(const json& req, std::vector<json>& events) {
    const std::string cmd = req.value("execute", "");
    const json a = req.value("arguments", json::object());
    json r;
    {
        std::lock_guard lock(mu_);
        if (cmd == "qmp_capabilities" || cmd == "quit")
            r = json::object();
        else
            r = qmp_device(cmd, a, events);
    }
    if (r.contains("error")) return {{"error", r["error"]}, {"id", req["id"]}};
    return {{"return", r}, {"id", req["id"]}};
}

json GuestModel::qmp_device(const std::string& cmd, const json& a, std::vector<json>& events) {
    if (cmd == "object-add") {
        backends_[a.at("id").get<std::string>()] = a.at("size").get<std::uint64_t>();
        return json::object();
    }
    if (cmd == "object-del") {
        backends_.erase(a.at("id").get<std::string>());
        return json::object();
    }
    if (cmd == "device_add") return device_add(a);
    if (cmd == "device_del") return device_del(a.at("id").get<std::string>(), events);
    if (cmd == "query-memory-devices") {
        json out = json::array();
        for (const auto& [id, d] : dimms_)
            out.push_back(
                {{"type", "dimm"}, {"data", {{"id", id}, {"addr", d.addr}, {"size", d.size}, {"node", d.node}}}});
        return out;
    }
    if (cmd == "qom-set" || cmd == "qom-get") return qom(cmd, a);
    return {{"error", {{"class", "CommandNotFound"}, {"desc", "The command " + cmd + " has not been found"}}}};
}

json GuestModel::device_add(const json& a) {
    ++device_adds_;
    if (k_.die_at_device_add && device_adds_ == k_.die_at_device_add) {
        dead_ = true;
        return json::object();
    }
    const auto backend = a.at("memdev").get<std::string>();
    const auto it = backends_.find(backend);
    if (it == backends_.end())
        return {{"error", {{"class", "GenericError"}, {"desc", "can't find memory backend " + backend}}}};
    Dimm d{backend, next_addr_, it->second, a.value("node", 0), {}};
    next_addr_ += d.size;
    if (k_.add_errno) {
        json rec = op("add", d.addr / kPage, d.size / kPage, d.node, k_.add_ns / 4);
        rec["ret"] = -k_.add_errno;
        emit(rec);
    } else {
        plug_blocks(d.addr, d.size, d.node, d.blocks, false);
    }
    dimms_[a.at("id").get<std::string>()] = d;
    return json::object();
}

// The blocks of [addr, addr + bytes) appear (online under auto-online) and
// the tracer records the add(s): one for a DIMM, one per block for
// virtio-mem; nested onlines before their add, as memhp trace writes them.
void GuestModel::plug_blocks(std::uint64_t addr, std::uint64_t bytes, int node, std::vector<int>& out, bool per_block) {
    const std::uint64_t unit = per_block ? k_.block_size : bytes;
    for (std::uint64_t at = addr; at < addr + bytes; at += unit) {
        const auto n = unit / k_.block_size;
        // 6.1 uses the altmap only for a single block (its silent fallback);
        // virtio-mem never asks for it.
        const bool altmap =
            !per_block && memmap_on_memory() && (n == 1 || (cfg_.kernel != "6.1" && !cfg_.kernel.starts_with("6.1.")));
        const std::uint64_t add_id = next_op_++;
        std::uint64_t nested = 0;
        for (std::uint64_t i = 0; i < n; ++i) {
            const int b = static_cast<int>(at / k_.block_size + i);
            blocks_[b] = {node, policy_ == "offline" ? "offline" : "online", policy_ == "offline" ? "" : "Movable",
                          true};
            out.push_back(b);
            if (policy_ == "offline") continue;
            json on = op("online", static_cast<std::uint64_t>(b) * k_.block_size / kPage, k_.block_size / kPage, node,
                         k_.online_ns);
            on["parent_op_id"] = add_id;
            emit(on);
            nested += k_.online_ns;
        }
        const auto own = n * (altmap ? k_.altmap_add_ns : k_.add_ns);
        json add = op("add", at / kPage, unit / kPage, node, own);
        add["op_id"] = add_id;
        add["nested_ns"] = nested;
        add["inclusive_ns"] = own + nested;
        const std::uint64_t memmap_pages = n * kFakeMemmapBytes / kPage;
        add["memmap"] = altmap ? json{{"altmap_pages", memmap_pages}, {"buddy_pages", 0}}
                               : json{{"altmap_pages", 0}, {"buddy_pages", memmap_pages}};
        add["free_bytes_consumed"] = altmap ? 0 : n * kFakeMemmapBytes;
        if (memmap_on_memory() && !altmap && !per_block) {
            add["memmap_on_memory_unused"] = true;
            add["unused_reason"] = "the add spans " + std::to_string(n) +
                                   " memory blocks; this kernel uses memmap_on_memory only for single-block adds";
        }
        emit(add);
    }
}

json GuestModel::device_del(const std::string& id, std::vector<json>& events) {
    const auto it = dimms_.find(id);
    if (it == dimms_.end())
        return {{"error", {{"class", "DeviceNotFound"}, {"desc", "Device '" + id + "' not found"}}}};
    for (int b : it->second.blocks)
        if (blocks_[b].state != "offline") return json::object();  // the guest refuses the eject: no event
    for (int b : it->second.blocks) blocks_.erase(b);
    if (!it->second.blocks.empty())
        emit(op("remove", it->second.addr / kPage, it->second.size / kPage, it->second.node,
                k_.remove_ns * it->second.blocks.size()));
    events.push_back({{"event", "DEVICE_DELETED"},
                      {"data", {{"device", id}, {"path", "/machine/peripheral/" + id}}},
                      {"timestamp", {{"seconds", 1}, {"microseconds", 0}}}});
    dimms_.erase(it);
    return json::object();
}

json GuestModel::qom(const std::string& cmd, const json& a) {
    const auto path = a.at("path").get<std::string>();
    for (auto& v : vmem_) {
        if (v.id != path) continue;
        if (cmd == "qom-get") return v.size;
        resize_virtio(v, a.at("value").get<std::uint64_t>());
        return json::object();
    }
    return {{"error", {{"class", "DeviceNotFound"}, {"desc", "Device '" + path + "' not found"}}}};
}

// The driver plugs up to the request at once; unplugging takes offline
// blocks from the top and stops at the first one still online.
void GuestModel::resize_virtio(VirtioMem& v, std::uint64_t requested) {
    if (requested > v.size) {
        plug_blocks(v.base + v.size, requested - v.size, v.node, v.blocks, true);
        v.size = requested;
    }
    while (v.size > requested && !v.blocks.empty() && blocks_[v.blocks.back()].state == "offline") {
        const int b = v.blocks.back();
        blocks_.erase(b);
        v.blocks.pop_back();
        v.size -= k_.block_size;
        emit(op("remove", static_cast<std::uint64_t>(b) * k_.block_size / kPage, k_.block_size / kPage, v.node,
                k_.remove_ns));
    }
}

// ---- the tracer's records ----------------------------------------------------

json GuestModel::op(const std::string& phase, std::uint64_t pfn, std::uint64_t pages, int node, std::uint64_t ns) {
    clock_ns_ += ns + 1000;
    return {{"schema", lab::kTraceSchemaNewest},
            {"op_id", next_op_++},
            {"phase", phase},
            {"tid", 77},
            {"ts_ns", clock_ns_},
            {"start_pfn", pfn},
            {"nr_pages", pages},
            {"nid", node},
            {"ret", 0},
            {"duration_ns", ns},
            {"inclusive_ns", ns},
            {"nested_ns", 0},
            {"parent_op_id", 0},
            {"mode", "fentry"}};
}

void GuestModel::emit(const json& record) {
    records_.push_back(record);
    for (auto& [pid, p] : procs_)
        if (p.kind == "trace" && !p.exit_code) files_[p.output] += record.dump() + "\n";
}

std::vector<json> GuestModel::records() const {
    std::lock_guard lock(mu_);
    return records_;
}

std::size_t GuestModel::blocks() const {
    std::lock_guard lock(mu_);
    return blocks_.size();
}

std::size_t GuestModel::blocks_online() const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& [b, blk] : blocks_) n += blk.state == "online";
    return n;
}

int GuestModel::device_adds() const {
    std::lock_guard lock(mu_);
    return device_adds_;
}

bool GuestModel::dead() const {
    std::lock_guard lock(mu_);
    return dead_;
}

std::string GuestModel::policy() const {
    std::lock_guard lock(mu_);
    return policy_;
}

// ---- the agent -----------------------------------------------------------------

json GuestModel::agent(const json& req) {
    const std::string o = req.value("op", "");
    json r;
    {
        std::lock_guard lock(mu_);
        if (o == "read")
            r = read_files(req.at("paths"));
        else if (o == "read_from") {
            const auto text = file(req.at("path").get<std::string>()).value_or("");
            const auto from = std::min<std::uint64_t>(req.at("offset").get<std::uint64_t>(), text.size());
            const auto nl = text.rfind('\n');
            const auto to = nl == std::string::npos || nl < from ? from : nl + 1;
            r = {{"data", text.substr(from, to - from)}, {"next", to}, {"size", text.size()}};
        } else if (o == "write")
            r = write(req.at("path").get<std::string>(), req.at("data").get<std::string>());
        else if (o == "listdir")
            r = listdir(req.at("path").get<std::string>());
        else if (o == "spawn")
            r = spawn(req.at("argv"), req.at("output").get<std::string>());
        else if (o == "wait") {
            const auto it = procs_.find(req.at("pid").get<int>());
            if (it == procs_.end())
                r = error_reply("no such child", ECHILD);
            else if (it->second.exit_code)
                r = {{"exited", true}, {"exit_code", *it->second.exit_code}};
            else
                r = {{"exited", false}};
        } else if (o == "signal")
            r = signal(req.at("pid").get<int>(), req.at("signal").get<int>());
        else if (o == "exec")
            r = exec(req.at("argv"));
        else if (o == "ping")
            r = {{"uptime_s", 2.5}};
        else
            r = error_reply("unknown op " + o, EINVAL);
    }
    if (!r.contains("ok")) r["ok"] = true;
    r["id"] = req["id"];
    return r;
}

json GuestModel::read_files(const json& paths) {
    json files = json::object();
    for (const auto& p : paths) {
        const auto f = file(p.get<std::string>());
        files[p.get<std::string>()] = f ? json(*f) : json(nullptr);
    }
    return {{"files", files}};
}

std::optional<std::string> GuestModel::file(const std::string& path) const {
    if (const auto it = files_.find(path); it != files_.end()) return it->second;
    std::string name;
    if (const int b = block_of(path, name); b >= 0) return block_file(b, name);
    if (path == kMem + "/block_size_bytes") {
        char hex[32];
        std::snprintf(hex, sizeof hex, "%llx\n", static_cast<unsigned long long>(k_.block_size));
        return hex;
    }
    if (path == kMem + "/auto_online_blocks") return policy_ + "\n";
    if (path == "/sys/module/memory_hotplug/parameters/memmap_on_memory")
        return std::string(memmap_on_memory() ? "Y" : "N") + "\n";
    if (path == "/proc/meminfo") return meminfo(std::nullopt);
    if (path == "/proc/vmstat") return vmstat();
    if (path == "/proc/buddyinfo")
        return "Node 0, zone   Normal    10    8    6    4    3    2    2    1    1    4   60\n";
    for (std::size_t n = 0; n < cfg_.node_mem.size(); ++n)
        if (path == kNode + "/node" + std::to_string(n) + "/meminfo") return meminfo(static_cast<int>(n));
    return std::nullopt;
}

std::optional<std::string> GuestModel::block_file(int b, const std::string& name) const {
    const auto it = blocks_.find(b);
    if (it == blocks_.end()) return std::nullopt;
    if (name == "state") return it->second.state + "\n";
    if (name == "valid_zones") return (it->second.state == "online" ? it->second.zone : "Movable Normal") + "\n";
    if (name == "node") return std::to_string(it->second.node) + "\n";
    return std::nullopt;
}

// Node totals are the online blocks; a hot-added block's memmap comes out
// of its own block with the altmap, else out of node 0's free memory.
std::string GuestModel::meminfo(std::optional<int> node) const {
    std::uint64_t total = 0, memmap = 0, boot = 0;
    for (const auto& [b, blk] : blocks_) {
        if (blk.hot && !memmap_on_memory()) memmap += kFakeMemmapBytes;
        if (node && blk.node != *node) continue;
        if (!blk.hot) boot += k_.block_size;
        if (blk.state == "online") total += k_.block_size - (blk.hot && memmap_on_memory() ? kFakeMemmapBytes : 0);
    }
    std::uint64_t used = boot / 10 + (!node || *node == 0 ? memmap : 0);
    used = std::min(used, total);
    const auto kb = [](std::uint64_t bytes) { return std::to_string(bytes / 1024); };
    if (!node) return "MemTotal:       " + kb(total) + " kB\nMemFree:        " + kb(total - used) + " kB\n";
    const auto pre = "Node " + std::to_string(*node) + " ";
    return pre + "MemTotal:       " + kb(total) + " kB\n" + pre + "MemFree:        " + kb(total - used) + " kB\n";
}

std::string GuestModel::vmstat() const {
    std::uint64_t hot = 0;
    for (const auto& [b, blk] : blocks_) hot += blk.hot;
    return "nr_free_pages 200000\nnr_memmap_pages " + std::to_string(hot * kFakeMemmapBytes / kPage) + "\noom_kill 0\n";
}

json GuestModel::write(const std::string& path, const std::string& data) {
    std::string name;
    if (const int b = block_of(path, name); b >= 0 && name == "state") return write_state(b, data);
    if (path == kMem + "/auto_online_blocks") {
        policy_ = data;
        return json::object();
    }
    return error_reply("open " + path + ": No such file or directory", ENOENT);
}

json GuestModel::write_state(int b, const std::string& data) {
    const auto it = blocks_.find(b);
    if (it == blocks_.end()) return error_reply("open memory" + std::to_string(b) + ": No such file", ENOENT);
    auto& blk = it->second;
    const std::uint64_t pfn = static_cast<std::uint64_t>(b) * k_.block_size / kPage, pages = k_.block_size / kPage;
    if (data == "offline") {
        if (blk.state == "offline") return error_reply("write offline: Invalid argument", EINVAL);
        if (k_.offline_ebusy) {
            json rec = op("offline", pfn, pages, blk.node, k_.offline_ns);
            rec["ret"] = -EBUSY;
            emit(rec);
            return error_reply("write " + kMem + "/memory" + std::to_string(b) + "/state: Device or resource busy",
                               EBUSY);
        }
        blk.state = "offline";
        emit(op("offline", pfn, pages, blk.node, k_.offline_ns));
        return json::object();
    }
    if (data != "online" && data != "online_movable" && data != "online_kernel")
        return error_reply("write " + data + ": Invalid argument", EINVAL);
    if (blk.state == "online") return error_reply("write online: Invalid argument", EINVAL);
    blk.state = "online";
    blk.zone = data == "online_kernel" ? "Normal" : "Movable";
    emit(op("online", pfn, pages, blk.node, k_.online_ns));
    return json::object();
}

json GuestModel::listdir(const std::string& path) const {
    json out = json::array();
    if (path == kMem) {
        out = {"block_size_bytes", "auto_online_blocks", "probe", "uevent"};
        for (const auto& [b, blk] : blocks_) out.push_back("memory" + std::to_string(b));
    } else if (path == kNode) {
        for (std::size_t n = 0; n < cfg_.node_mem.size(); ++n) out.push_back("node" + std::to_string(n));
        out.push_back("possible");
    } else {
        return error_reply("opendir " + path + ": No such file or directory", ENOENT);
    }
    return {{"entries", out}};
}

// memhp trace says it attached and then writes what emit() hands it;
// memhp-hog says it is ready; anything else exits at once.
json GuestModel::spawn(const json& argv, const std::string& output) {
    const int pid = next_pid_++;
    Process p{"other", output, std::nullopt};
    const auto prog = argv.empty() ? std::string() : argv.front().get<std::string>();
    const bool trace = std::any_of(argv.begin(), argv.end(), [](const json& a) { return a == "trace"; });
    if (trace && std::any_of(argv.begin(), argv.end(), [](const json& a) { return ends_with(a, "/memhp"); })) {
        p.kind = "trace";
        files_[output] = "memhp: attached 14 probes (fentry/fexit, page allocator tp_btf)\n";
    } else if (ends_with(prog, "/memhp-hog")) {
        p.kind = "hog";
        files_[output] =
            "memhp-hog: ready {\"setup_s\":0.25,\"mem_free_bytes\":67108864,\"high_order_free_blocks\":3,"
            "\"released_bytes\":0}\n";
    } else {
        p.exit_code = 0;
        files_[output] = "";
    }
    procs_[pid] = p;
    return {{"pid", pid}};
}

json GuestModel::signal(int pid, int sig) {
    const auto it = procs_.find(pid);
    if (it == procs_.end()) return error_reply("kill: No such process", ESRCH);
    auto& p = it->second;
    if (p.exit_code) return json::object();
    if (p.kind == "trace" && sig == SIGINT) {
        std::size_t ops = 0;
        for (const auto& r : records_) ops += r.contains("phase");
        files_[p.output] += json{{"schema", lab::kTraceSchemaNewest},
                                 {"record", "summary"},
                                 {"events", ops * 3},
                                 {"dropped_events", 0},
                                 {"decode_errors", 0},
                                 {"orphan_page_events", 0},
                                 {"stale_ops", 0},
                                 {"untraced_ops", 0},
                                 {"interrupt_page_events", 0}}
                                .dump() +
                            "\n";
    }
    p.exit_code = sig == SIGKILL ? 128 + SIGKILL : 0;
    return json::object();
}

json GuestModel::exec(const json& argv) const {
    const std::string script = argv.size() == 3 ? argv[2].get<std::string>() : std::string();
    const std::string out = script.find("bpf_link") != std::string::npos ? "0\n" : "";
    return {{"exit_code", 0}, {"stdout", out}, {"stderr", ""}, {"timed_out", false}};
}

// ---- the machine -------------------------------------------------------------

FakeGuest::FakeGuest(const lab::GuestConfig& cfg, FakeKernel k) : model_(std::make_shared<GuestModel>(cfg, k)) {
    kernel_.spec = cfg.kernel;
    kernel_.package = "linux-image-" + model_->release();
    kernel_.version = cfg.kernel + ".99-1";
    kernel_.release = model_->release();
    const auto q = make_socketpair(), a = make_socketpair();
    const auto tick = [this] { check_alive(); };
    qmp_ = lab::QmpClient(LineChannel(q.near, "qmp"), tick);
    agent_ = lab::AgentClient(LineChannel(a.near, "agent"), tick);
    servers_.emplace_back([this, fd = q.far] { serve_qmp(fd); });
    servers_.emplace_back([this, fd = a.far] { serve_agent(fd); });
}

FakeGuest::~FakeGuest() { shutdown(); }

void FakeGuest::shutdown() {
    stop_ = true;
    for (auto& t : servers_)
        if (t.joinable()) t.join();
}

void FakeGuest::wait_ready() {
    (void)qmp_.handshake(2000ms);
    (void)agent_.wait_hello(2000ms);
    policy_ = model_->policy();
}

std::string FakeGuest::console_tail(std::size_t) const {
    return model_->dead() ? "[    9.000000] fake: the guest died at a device_add\n" : "[    1.000000] fake: booted\n";
}

void FakeGuest::check_alive() {
    if (model_->dead()) throw lab::GuestError("the fake guest died (QEMU exited, status 1)");
}

void FakeGuest::serve_qmp(int fd) {
    LineChannel ch(fd, "fake-qmp");
    try {
        ch.write_line(R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}})",
                      LineChannel::Clock::now() + 2s);
        while (!stop_ && !model_->dead()) {
            const auto line = ch.read_line(LineChannel::Clock::now() + 50ms);
            if (!line) continue;
            std::vector<json> events;
            const auto reply = model_->qmp(json::parse(*line), events);
            if (model_->dead()) return;
            ch.write_line(reply.dump(), LineChannel::Clock::now() + 2s);
            for (const auto& e : events) ch.write_line(e.dump(), LineChannel::Clock::now() + 2s);
        }
    } catch (const std::exception&) {  // the client went away: the fake guest is over
    }
}

void FakeGuest::serve_agent(int fd) {
    LineChannel ch(fd, "fake-agent");
    try {
        const json hello{
            {"event", "hello"}, {"proto", lab::kAgentProtocol}, {"release", model_->release()}, {"uptime_s", 1.25}};
        ch.write_line(hello.dump(), LineChannel::Clock::now() + 2s);
        while (!stop_ && !model_->dead()) {
            const auto line = ch.read_line(LineChannel::Clock::now() + 50ms);
            if (!line) continue;
            const auto reply = model_->agent(json::parse(*line));
            if (model_->dead()) return;
            ch.write_line(reply.dump(), LineChannel::Clock::now() + 2s);
        }
    } catch (const std::exception&) {}
}

}  // namespace memhp::test
