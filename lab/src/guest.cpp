// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/guest.hpp"

#include <unistd.h>

#include <cstdlib>
#include <numeric>
#include <thread>

#include "memhp/lab/agent_protocol.hpp"
#include "memhp/lab/initramfs.hpp"
#include "memhp/size.hpp"
#include "memhp/stop.hpp"

namespace memhp::lab {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
// How long into a boot an RCU stall on the console counts as a hang.
constexpr std::chrono::seconds kStallGrace{60};

fs::path default_agent_path() {
    if (const char* a = std::getenv("MEMHP_AGENT"); a && *a) return a;
    std::error_code ec;
    auto self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        auto candidate = self.parent_path() / "memhp-agent";
        if (fs::exists(candidate)) return candidate;
    }
    return {};
}

std::string virtio_mem_id(std::size_t i) { return "vmem" + std::to_string(i); }

namespace {
// virtio_mem is a module on Debian's kernels (built in on none of them so
// far): the guest's root shares the kernel's modules directory from the
// cache (lab/src/shares.cpp) and the host's /usr, so the host's kmod insmod
// loads it from there (.ko or .ko.xz). memhp's
// patched kernels build it in (kernel-patches/*/lab.config): their driver is
// registered from boot. Then waits until the driver has bound every device.
bool virtio_mem_driver_registered(AgentClient& agent) {
    try {
        (void)agent.listdir("/sys/bus/virtio/drivers/virtio_mem");
        return true;
    } catch (const AgentError&) {
        return false;
    }
}

void load_virtio_mem(Guest& g) {
    auto& agent = g.agent();
    if (!agent.try_read("/sys/module/virtio_mem/initstate") && !agent.try_read("/sys/module/virtio_mem/uevent") &&
        !virtio_mem_driver_registered(agent)) {
        const auto& mods = g.kernel().modules_dir;
        fs::path ko;
        for (const char* name : {"virtio_mem.ko", "virtio_mem.ko.xz", "virtio_mem.ko.zst"})
            if (fs::exists(mods / "kernel/drivers/virtio" / name)) ko = mods / "kernel/drivers/virtio" / name;
        if (ko.empty())
            throw GuestError("--virtio-mem: this kernel has no virtio_mem module under " + mods.string() +
                             " and does not build it in; use a kernel with CONFIG_VIRTIO_MEM");
        const auto r = agent.exec({"/sbin/insmod", ko.string()});
        if (!r.ok()) throw GuestError("insmod " + ko.string() + " failed in the guest: " + trim(r.err + r.out));
    }
    const auto want = g.config().virtio_mem.size();
    for (int i = 0; i < 300; ++i) {
        std::size_t bound = 0;
        try {
            for (const auto& e : agent.listdir("/sys/bus/virtio/drivers/virtio_mem"))
                if (e.starts_with("virtio")) ++bound;
        } catch (const AgentError&) {
            // the driver is not registered yet
        }
        if (bound >= want) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        g.check_alive();
    }
    throw GuestError("the virtio_mem driver did not bind the guest's " + std::to_string(want) +
                     " virtio-mem device(s) within 30 s: see the console log");
}
}  // namespace

OnlineMode parse_online_mode(const std::string& text) {
    if (text == "auto") return OnlineMode::Auto;
    if (text == "manual") return OnlineMode::Manual;
    throw UsageError(
        "--online must be auto (the kernel onlines added memory, as real hosts do) or manual (the lab "
        "onlines each block), not '" +
        text + "'");
}

const char* online_mode_name(OnlineMode m) { return m == OnlineMode::Auto ? "auto" : "manual"; }

void validate(const GuestConfig& cfg) {
    if (cfg.node_mem.empty() || cfg.node_mem[0] == 0)
        throw UsageError("node 0 needs memory (the guest boots from it): e.g. --node-mem 1G,0");
    if (cfg.node_mem.size() > 64) throw UsageError("at most 64 NUMA nodes");
    for (auto m : cfg.node_mem)
        if (m % (std::uint64_t{1} << 20)) throw UsageError("node memory must be a multiple of 1 MiB");
    if (cfg.cpus == 0 || cfg.cpus > 64) throw UsageError("--cpus must be 1..64");
    if (cfg.slots == 0 || cfg.slots > 256) throw UsageError("--slots must be 1..256");
    if (cfg.accel != "tcg" && cfg.accel != "kvm")
        throw UsageError("--accel must be tcg or kvm, not '" + cfg.accel + "'");
    std::uint64_t boot = std::accumulate(cfg.node_mem.begin(), cfg.node_mem.end(), std::uint64_t{0});
    if (cfg.maxmem && cfg.maxmem <= boot)
        throw UsageError("--maxmem (" + format_size_exact(cfg.maxmem) + ") must exceed the boot memory (" +
                         format_size_exact(boot) + ") to leave room for hot-add");
    if (cfg.boot_timeout.count() <= 0) throw UsageError("--boot-timeout must be positive");
    for (const auto& f : cfg.tcp_forwards)
        if (f.host_port == 0 || f.guest_port == 0) throw UsageError("a TCP forward needs a host and a guest port");
    std::uint64_t vmem_total = 0;
    for (const auto& v : cfg.virtio_mem) {
        if (v.node < 0 || static_cast<std::size_t>(v.node) >= cfg.node_mem.size())
            throw UsageError("--virtio-mem: node " + std::to_string(v.node) + " does not exist (the guest has " +
                             std::to_string(cfg.node_mem.size()) + " nodes; see --node-mem)");
        if (v.max_size == 0 || v.max_size % (std::uint64_t{128} << 20))
            throw UsageError(
                "--virtio-mem: the size must be a positive multiple of 128M (the guest's memory block), not " +
                format_size_exact(v.max_size));
        if (v.block_size && (v.block_size & (v.block_size - 1)))
            throw UsageError("--virtio-mem: the block size must be a power of two");
        vmem_total += v.max_size;
    }
    if (cfg.maxmem && vmem_total && cfg.maxmem <= boot + vmem_total)
        throw UsageError("--maxmem (" + format_size_exact(cfg.maxmem) +
                         ") must exceed the boot memory plus the "
                         "virtio-mem devices (" +
                         format_size_exact(boot + vmem_total) + ")");
}

std::string kernel_cmdline(const GuestConfig& cfg, const fs::path& agent, const fs::path& cwd) {
    // no_timer_check: under TCG on a busy host the vCPU runs so slowly that
    // the IO-APIC timer check at boot sees no ticks and panics ("IO-APIC +
    // timer doesn't work!"); seen here with two guests booting beside
    // kernel builds. A virtual machine's timer needs no such check.
    std::string c =
        "console=ttyS0 panic=-1 oops=panic no_timer_check memhp.agent=" + agent.string() + " memhp.cwd=" + cwd.string();
    if (cfg.memmap_on_memory)
        c += std::string(" memory_hotplug.memmap_on_memory=") + (*cfg.memmap_on_memory ? "1" : "0");
    if (!cfg.tcp_forwards.empty()) c += " memhp.net=1";
    for (const auto& a : cfg.append) c += " " + a;
    return c;
}

std::vector<std::string> qemu_command(const GuestConfig& cfg, const fs::path& vmlinuz, const fs::path& initrd,
                                      const fs::path& run_dir, const fs::path& agent, const fs::path& cwd,
                                      const SharePlan& shares) {
    const std::uint64_t boot = std::accumulate(cfg.node_mem.begin(), cfg.node_mem.end(), std::uint64_t{0});
    std::uint64_t vmem_total = 0;
    for (const auto& v : cfg.virtio_mem) vmem_total += v.max_size;
    const std::uint64_t maxmem = cfg.maxmem ? cfg.maxmem : boot + vmem_total + (std::uint64_t{16} << 30);
    std::vector<std::string> a = {
        cfg.qemu,
        "-machine",
        "q35,accel=" + cfg.accel,
        "-cpu",
        cfg.accel == "kvm" ? "host" : "max",
        "-smp",
        std::to_string(cfg.cpus),
        "-m",
        format_size_exact(boot) + ",slots=" + std::to_string(cfg.slots) + ",maxmem=" + format_size_exact(maxmem)};
    for (std::size_t i = 0; i < cfg.node_mem.size(); ++i) {
        std::string node = "node,nodeid=" + std::to_string(i);
        if (i == 0) node += ",cpus=0-" + std::to_string(cfg.cpus - 1);
        if (cfg.node_mem[i]) {
            a.insert(a.end(), {"-object", "memory-backend-ram,id=boot" + std::to_string(i) +
                                              ",size=" + format_size_exact(cfg.node_mem[i])});
            node += ",memdev=boot" + std::to_string(i);
        }
        a.insert(a.end(), {"-numa", node});
    }
    a.insert(a.end(), {
                          "-kernel",
                          vmlinuz.string(),
                          "-initrd",
                          initrd.string(),
                          "-append",
                          kernel_cmdline(cfg, agent, cwd),
                          "-nodefaults",
                          "-no-user-config",
                          "-display",
                          "none",
                          "-no-reboot",
                          "-chardev",
                          "socket,id=con,path=" + (run_dir / "console.sock").string() +
                              ",server=on,wait=off,logfile=" + (run_dir / "console.log").string(),
                          "-serial",
                          "chardev:con",
                          "-device",
                          "virtio-serial-pci,id=vser0",
                          "-chardev",
                          "socket,id=agent,path=" + (run_dir / "agent.sock").string() + ",server=on,wait=off",
                          "-device",
                          std::string("virtserialport,chardev=agent,name=") + kAgentPortName,
                          // What of the host the guest sees: the share table (its init reads it)
                          // and the shares it names, never the host's whole root (shares.hpp).
                          "-virtfs",
                          virtfs_arg(kMetaShareTag, run_dir / "guest-meta"),
                          "-qmp",
                          "unix:" + (run_dir / "qmp.sock").string() + ",server=on,wait=off",
                          // A second QMP socket for a person poking at a --keep guest.
                          "-qmp",
                          "unix:" + (run_dir / "qmp-user.sock").string() + ",server=on,wait=off",
                      });
    for (const auto& sh : shares.shares) a.insert(a.end(), {"-virtfs", virtfs_arg(sh.tag, sh.host)});
    for (std::size_t i = 0; i < cfg.virtio_mem.size(); ++i) {
        // Nothing plugged at boot: memory comes with qom-set requested-size (MemoryLab::resize_virtio_mem).
        const auto& v = cfg.virtio_mem[i];
        const std::string n = std::to_string(i);
        a.insert(a.end(), {"-object", "memory-backend-ram,id=vmemmem" + n + ",size=" + format_size_exact(v.max_size) +
                                          ",reserve=off"});
        std::string dev = "virtio-mem-pci,id=" + virtio_mem_id(i) + ",memdev=vmemmem" + n +
                          ",node=" + std::to_string(v.node) + ",requested-size=0";
        if (v.block_size) dev += ",block-size=" + format_size_exact(v.block_size);
        a.insert(a.end(), {"-device", dev});
    }
    if (!cfg.tcp_forwards.empty()) {
        // User networking bound to the host's loopback only; restrict=on cuts
        // the guest off from everything but the forwarded ports.
        std::string netdev = "user,id=net0,restrict=on";
        for (const auto& f : cfg.tcp_forwards)
            netdev += ",hostfwd=tcp:127.0.0.1:" + std::to_string(f.host_port) + "-:" + std::to_string(f.guest_port);
        a.insert(a.end(), {"-netdev", netdev, "-device", "virtio-net-pci,netdev=net0"});
    }
    return a;
}

std::unique_ptr<Guest> Guest::boot(const GuestConfig& cfg, const Progress& progress) {
    auto g = start(cfg, progress);
    g->wait_ready();
    return g;
}

std::unique_ptr<Guest> Guest::start(const GuestConfig& cfg, const Progress& progress) {
    validate(cfg);
    auto say = [&](const std::string& s) {
        if (progress) progress(s);
    };
    if (!find_program(cfg.qemu))
        throw Error("QEMU binary '" + cfg.qemu +
                    "' not found: install qemu-system-x86 (scripts/install-deps.sh) or pass --qemu PATH");
    fs::path agent = cfg.agent.empty() ? default_agent_path() : cfg.agent;
    if (agent.empty() || !fs::exists(agent))
        throw Error("memhp-agent not found (looked beside this binary; set MEMHP_AGENT): build the project first");
    agent = fs::canonical(agent);
    // The guest shares the agent's directory at its host path: one under a
    // path the guest mounts its own file systems over would be hidden.
    for (const char* hidden : {"/proc/", "/sys/", "/dev/", "/run/"})
        if (agent.string().starts_with(hidden))
            throw Error("memhp-agent lives under " + std::string(hidden) +
                        ", which the guest mounts over: build elsewhere");

    std::unique_ptr<Guest> g(new Guest());
    g->cfg_ = cfg;
    KernelCache cache(cache_dir() / "kernels", say);
    g->kernel_ = cache.ensure(cfg.kernel);
    // memory_hotplug.memmap_on_memory=1 on a kernel without the feature is
    // an unknown parameter the kernel ignores: the run would silently measure
    // the page allocator. Refuse before booting.
    if (cfg.memmap_on_memory.value_or(false) && kernel_config_has(g->kernel_, "MHP_MEMMAP_ON_MEMORY") == false)
        throw UsageError(
            "memmap_on_memory=on asked, but kernel " +
            (g->kernel_.package.empty() ? g->kernel_.vmlinuz.string() : g->kernel_.package) +
            " is built without CONFIG_MHP_MEMMAP_ON_MEMORY (memmap_on_memory arrived in Linux 5.12, "
            "so 5.10 has none): ask for memmap_on_memory off, or take a kernel that has it (6.1, 6.12, 7.2)");
    auto initrd = ensure_initramfs(g->kernel_, cache_dir());

    const auto& dir = g->run_dir_.path();
    stage_guest_etc("/etc", dir / "guest-etc");
    const auto modules = g->kernel_.modules_dir.empty() ? fs::path() : fs::absolute(g->kernel_.modules_dir);
    const auto shares = plan_shares("/", agent.parent_path(), modules, dir / "guest-etc");
    fs::create_directories(dir / "guest-meta");
    write_file(dir / "guest-meta" / "shares", share_table(shares));
    auto argv = qemu_command(cfg, g->kernel_.vmlinuz, initrd, dir, agent, fs::current_path(), shares);
    write_file(dir / "qemu.cmdline", shell_join(argv) + "\n");
    say("booting " + (g->kernel_.package.empty() ? g->kernel_.vmlinuz.string() : g->kernel_.package) + " under " +
        (cfg.accel == "tcg" ? "TCG (software emulation)" : "KVM"));
    g->progress_ = progress;
    g->started_ = Clock::now();
    g->qemu_argv_ = argv;
    g->qemu_ = ChildProcess::spawn(argv, dir / "qemu.log");
    return g;
}

BootRetry transient_boot_failure(std::string_view console, bool qemu_running) {
    if (!qemu_running && console.find("Fatal exception") != std::string_view::npos) return BootRetry::Oops;
    for (const std::string_view stall : {"detected stall", "kthread starved", "timer wakeup didn't happen"})
        if (console.find(stall) != std::string_view::npos) return BootRetry::Stall;
    return BootRetry::None;
}

// A kernel oops while booting ("Fatal exception", e.g. in sched_clock_cpu()
// in an interrupt) hits Debian's 6.12 kernel under TCG now and then: about 2
// boots in 25 here; an RCU stall that never clears hit a 6.1 boot in CI.
// Both are the emulation, not the configuration, so such a boot is tried
// once more. A panic for any other reason (no init, no root) is reported at
// once.
void Guest::wait_ready() {
    try {
        wait_ready_once();
    } catch (const GuestError&) {
        if (rebooted_) throw;
        const auto why = transient_boot_failure(console_tail(400), qemu_.running());
        if (why == BootRetry::None) throw;
        rebooted_ = true;
        qemu_.terminate(std::chrono::milliseconds(2000));
        const auto& dir = run_dir_.path();
        for (const char* log : {"console.log", "qemu.log"}) {
            std::error_code ec;
            fs::rename(dir / log, dir / (std::string("first-boot-") + log), ec);
        }
        for (const char* sock : {"qmp.sock", "agent.sock"}) {
            std::error_code ec;
            fs::remove(dir / sock, ec);
        }
        if (progress_)
            progress_(why == BootRetry::Oops
                          ? "the guest kernel oopsed while booting (Fatal exception; see first-boot-console.log): "
                            "booting it once more"
                          : "the guest kernel stalled while booting (RCU stall under emulation; see "
                            "first-boot-console.log): booting it once more");
        started_ = Clock::now();
        qemu_ = ChildProcess::spawn(qemu_argv_, dir / "qemu.log");
        wait_ready_once();
    }
}

void Guest::wait_ready_once() {
    auto say = [this](const std::string& s) {
        if (progress_) progress_(s);
    };
    const auto& cfg = cfg_;
    const auto& dir = run_dir_.path();
    const auto t0 = started_;
    Guest* self = this;
    Guest* g = this;
    auto last_report = t0;
    auto tick = [self] { self->check_alive(); };
    auto boot_tick = [self, &say, &last_report, t0, &cfg] {
        self->check_alive();
        const auto now = Clock::now();
        const auto secs = std::chrono::duration_cast<std::chrono::seconds>(now - t0);
        if (cfg.accel == "kvm" && secs > cfg.kvm_watchdog && self->console_tail(1).empty())
            throw GuestError(
                self->failure_report("the KVM guest printed nothing in " + std::to_string(cfg.kvm_watchdog.count()) +
                                     " s: KVM hangs stock guest kernels on this host; use --accel tcg (the default)"));
        // A stall that is still there well into the boot (a normal boot is
        // 7-40 s here) will not clear: give up now and let wait_ready()
        // boot again, rather than wait out the whole boot timeout.
        if (secs > kStallGrace && now - last_report >= std::chrono::seconds(5) &&
            transient_boot_failure(self->console_tail(400), true) == BootRetry::Stall)
            throw GuestError(self->failure_report(
                "the guest kernel stalled while booting (an RCU stall, still there " + std::to_string(secs.count()) +
                " s into the boot): the emulation starves on a loaded host; run again with fewer guests at once"));
        if (secs > cfg.boot_timeout)
            throw GuestError(self->failure_report(
                "the guest did not become ready within " + std::to_string(cfg.boot_timeout.count()) +
                " s (agent never said hello); raise --boot-timeout if the machine is slow"));
        if (now - last_report >= std::chrono::seconds(5)) {
            last_report = now;
            auto line = trim(self->console_tail(1));
            if (line.size() > 90) line = line.substr(0, 90) + "...";
            say("  ... " + std::to_string(secs.count()) + " s" + (line.empty() ? "" : ", console: " + line));
        }
    };
    try {
        auto qmp = LineChannel::connect_unix((dir / "qmp.sock").string(), std::chrono::seconds(30), tick);
        g->qmp_ = QmpClient(std::move(qmp), tick);
        g->qmp_.handshake();
        auto agent_ch = LineChannel::connect_unix((dir / "agent.sock").string(), std::chrono::seconds(30), tick);
        g->agent_ = AgentClient(std::move(agent_ch), boot_tick);
        auto hello = g->agent_.wait_hello(cfg.boot_timeout + cfg.boot_timeout);  // boot_tick enforces the limit
        g->release_ = hello.value("release", "");
        g->uptime_at_ready_ = hello.value("uptime_s", 0.0);
        g->agent_.set_tick(tick);
    } catch (const ChannelClosed& e) {
        g->qemu_.wait_for(std::chrono::seconds(5));
        g->check_alive();  // QEMU gone: report that instead
        throw GuestError(g->failure_report(std::string("lost the connection to QEMU: ") + e.what()));
    }
    g->boot_seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
    say("guest ready in " + std::to_string(static_cast<int>(g->boot_seconds_ + 0.5)) + " s (kernel " + g->release_ +
        ")");

    const std::string knob = "/sys/devices/system/memory/auto_online_blocks";
    if (auto policy = g->agent_.try_read(knob)) {
        const std::string p = trim(*policy);
        if (cfg.online == OnlineMode::Manual && p != "offline") g->agent_.write(knob, "offline");
        if (cfg.online == OnlineMode::Auto && p == "offline") g->agent_.write(knob, "online_movable");
        g->online_policy_ = trim(g->agent_.read(knob));
    }
    if (!cfg.virtio_mem.empty()) load_virtio_mem(*g);
}

Guest::~Guest() { qemu_.terminate(std::chrono::milliseconds(2000)); }

std::string Guest::console_tail(std::size_t n) const {
    // The console is whatever the guest kernel printed: bytes that are not
    // UTF-8 become U+FFFD here, so error texts can go into results.json.
    auto text = try_read_file(run_dir_.path() / "console.log");
    return text ? valid_utf8(last_lines(*text, n)) : std::string();
}

bool Guest::alive() { return qemu_.running(); }

std::string Guest::qemu_cmdline() const { return trim(read_file(run_dir_.path() / "qemu.cmdline")); }

void Guest::check_alive() {
    check_stop();
    if (!qemu_.running()) {
        int code = qemu_.exit_code().value_or(-1);
        std::string console = console_tail(400);
        std::string what = "QEMU exited (status " + std::to_string(code) + ")";
        if (const auto at = console.find("Kernel panic"); at != std::string::npos) {
            // The reason ("Kernel panic - not syncing: ...") precedes a stack
            // dump longer than the lines the report quotes: name it here.
            const auto reason = console.find("not syncing: ", at);
            const auto eol = console.find('\n', at);
            what = "the guest kernel panicked" +
                   (reason != std::string::npos && reason < eol
                        ? " (" + trim(console.substr(reason + 13, eol - reason - 13)) + ")"
                        : std::string()) +
                   "; " + what;
        } else if (console.find("memhp-init: FATAL") != std::string::npos)
            what = "the guest's init failed; " + what;
        throw GuestError(failure_report(what));
    }
}

std::string Guest::failure_report(const std::string& headline) const {
    std::string msg = headline;
    auto console = console_tail(15);
    msg += "\n--- last console lines (" + (run_dir_.path() / "console.log").string() + ") ---\n" +
           (console.empty() ? "(nothing)" : console);
    auto qlog = try_read_file(run_dir_.path() / "qemu.log");
    if (qlog && !trim(*qlog).empty()) msg += "\n--- QEMU said ---\n" + valid_utf8(last_lines(*qlog, 8));
    return msg;
}

void Guest::kill_qemu() { qemu_.terminate(std::chrono::milliseconds(0)); }

void Guest::shutdown() {
    if (qemu_.running()) {
        try {
            qmp_.execute("quit", nullptr, std::chrono::seconds(5));
        } catch (const std::exception&) {}
        qemu_.wait_for(std::chrono::seconds(5));
    }
    qemu_.terminate(std::chrono::milliseconds(1000));
}

}  // namespace memhp::lab
