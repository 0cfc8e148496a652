// SPDX-License-Identifier: Apache-2.0
// memhp's probe costs, measured where they matter: in a lab guest (Google
// Benchmark; figures, not assertions).
//
//   memhp_probe_bench --boot[=KERNEL]   boot a lab guest (default 6.1) and run
//                                       the benchmarks inside it, as root
//   memhp_probe_bench [options]         run here (root, BTF; meant for the guest)
//
// Always-on cost: PageFault/{none,empty,memhp} runs a page-fault loop (mmap 64
// pages, write each, munmap) with no BPF program, with empty programs on the
// tp_btf hooks memhp keeps attached (mm_page_alloc, mm_page_free), and with
// memhp's probes attached. memhp's added cost is reported as a ratio of the
// empty programs' (target <= 1.25x).
// Start-up: Startup/{memhp,bpftrace} times `memhp trace` and an equivalent
// bpftrace script (hotplug.bt) from spawn to all probes attached ("memhp:
// attached"; bpftrace 0.17 prints "Attaching N probes..." before it attaches
// and nothing after, and its BEGIN runs before the attaches, so it is
// attached once it holds N attachments: a BPF link per kfunc/kretfunc, a
// perf event per tracepoint, beyond its perf buffer's one per CPU).
// Target: memhp >= 5x faster.
// Modes run interleaved, --reps times, so drift hits all alike; the added
// costs are medians of per-repetition differences (paired), side by side
// from the same run. Under TCG a page fault costs ~100 us and the hooks a few
// percent of that, so a second figure isolates the programs themselves: the
// kernel's BPF run-time statistics (BPF_ENABLE_STATS) per invocation of
// memhp's and the empty mm_page_alloc program over the same loop.
#include <benchmark/benchmark.h>
#include <bpf/bpf.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "memhp/collector/bpf_support.hpp"
#include "memhp/collector/probe_backend.hpp"
#include "memhp/files.hpp"
#include "memhp/lab/guest.hpp"
#include "memhp/process.hpp"
#include "overhead_baseline.skel.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kPagesPerIteration = 64;
constexpr std::size_t kPage = 4096;

fs::path self_dir() { return fs::read_symlink("/proc/self/exe").parent_path(); }

// ---- page-fault loop -----------------------------------------------------------

// mmap, write one byte per page (one page allocation each), munmap (one free each).
bool fault_once() {
    const std::size_t len = kPagesPerIteration * kPage;
    auto* p =
        static_cast<volatile char*>(::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) return false;
    for (std::size_t off = 0; off < len; off += kPage) p[off] = 1;
    ::munmap(const_cast<char*>(p), len);
    return true;
}

void page_faults(benchmark::State& state) {
    for (auto _ : state) {
        if (!fault_once()) {
            state.SkipWithError("mmap failed");
            break;
        }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kPagesPerIteration));
}

// Run time per invocation (ns) of the loaded program whose name starts with
// `prefix` (the kernel keeps 15 characters), over `iterations` fault loops
// with the kernel's BPF statistics on; -1 if there is no such program.
double program_ns_per_run(const std::string& prefix, int iterations) {
    const int stats = bpf_enable_stats(BPF_STATS_RUN_TIME);
    if (stats < 0) throw memhp::Error("BPF_ENABLE_STATS failed: " + std::string(std::strerror(errno)));
    auto read = [&](std::uint64_t& ns, std::uint64_t& cnt) {
        __u32 id = 0;
        while (bpf_prog_get_next_id(id, &id) == 0) {
            const int fd = bpf_prog_get_fd_by_id(id);
            if (fd < 0) continue;
            bpf_prog_info info{};
            __u32 len = sizeof info;
            if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && std::string(info.name).starts_with(prefix)) {
                ns = info.run_time_ns;
                cnt = info.run_cnt;
                ::close(fd);
                return true;
            }
            ::close(fd);
        }
        return false;
    };
    std::uint64_t ns0 = 0, cnt0 = 0, ns1 = 0, cnt1 = 0;
    bool found = read(ns0, cnt0);
    for (int i = 0; i < iterations; ++i) fault_once();
    found = found && read(ns1, cnt1);
    ::close(stats);
    if (!found || cnt1 == cnt0) return -1;
    return static_cast<double>(ns1 - ns0) / static_cast<double>(cnt1 - cnt0);
}

// What is attached during a PageFault run; RAII.
class Attached {
public:
    explicit Attached(const std::string& mode) {
        if (mode == "empty") {
            empty_ = overhead_baseline__open_and_load();
            if (!empty_ || overhead_baseline__attach(empty_))
                throw memhp::Error("cannot attach the empty tp_btf programs: " + memhp::collector::libbpf_log_tail());
        } else if (mode == "memhp") {
            probes_ = memhp::collector::make_probe_backend([](std::span<const std::uint8_t>) {}, {});
        }
    }
    ~Attached() {
        probes_.reset();
        if (empty_) overhead_baseline__destroy(empty_);
    }
    Attached(const Attached&) = delete;
    Attached& operator=(const Attached&) = delete;

private:
    overhead_baseline* empty_ = nullptr;
    std::unique_ptr<memhp::collector::ProbeBackend> probes_;
};

// ---- start-up ------------------------------------------------------------------

struct Tool {
    std::vector<std::string> argv;
    std::string ready;  // printed once every probe is attached (or, bpftrace, about to be)
    int reps = 1;
    bool count_attachments = false;  // bpftrace: then also wait for the attachments
    bool hit_deadline = false;       // a run did not get there in time: its figure is a lower bound
};

std::map<std::string, Tool> g_tools;
std::chrono::seconds g_deadline{900};

// BPF links and perf events process `pid` holds, less its perf buffer's
// one per online CPU: bpftrace's attached probes.
int bpftrace_attachments(pid_t pid) {
    int n = -static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
    std::error_code ec;
    for (const auto& fd : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
        const auto target = std::filesystem::read_symlink(fd.path(), ec).string();
        n += target == "anon_inode:bpf_link" || target == "anon_inode:[perf_event]";
    }
    return n;
}

// Spawns the tool, waits until it is attached (at most g_deadline: then the
// deadline is the figure, a lower bound), stops it with SIGINT.
double startup_seconds(Tool& tool) {
    memhp::TempDir dir;
    const auto out = dir.path() / "out";
    const auto t0 = Clock::now();
    auto child = memhp::ChildProcess::spawn(tool.argv, out);
    double took = -1;
    const auto deadline = t0 + g_deadline;
    while (Clock::now() < deadline) {
        const auto text = memhp::try_read_file(out).value_or("");
        std::smatch m;
        const bool ready = tool.count_attachments ? std::regex_search(text, m, std::regex("Attaching (\\d+) probes")) &&
                                                        bpftrace_attachments(child.pid()) >= std::stoi(m[1].str())
                                                  : text.find(tool.ready) != std::string::npos;
        if (ready) {
            took = std::chrono::duration<double>(Clock::now() - t0).count();
            break;
        }
        if (!child.running()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const bool alive = child.running();
    ::kill(child.pid(), SIGINT);
    if (!child.wait_for(std::chrono::seconds(60))) child.terminate();
    if (took < 0 && alive && Clock::now() >= deadline) {
        tool.hit_deadline = true;
        return std::chrono::duration<double>(g_deadline).count();
    }
    if (took < 0)
        throw memhp::Error(memhp::shell_join(tool.argv) + " exited before all its probes were attached:\n" +
                           memhp::last_lines(memhp::try_read_file(out).value_or(""), 15));
    return took;
}

void startup(benchmark::State& state, const std::string& name) {
    for (auto _ : state) {
        try {
            state.SetIterationTime(startup_seconds(g_tools.at(name)));
        } catch (const std::exception& e) {
            state.SkipWithError(e.what());
            break;
        }
    }
}

// ---- reporting -----------------------------------------------------------------

// Console output as usual, plus the real time of every run by name.
class Collecting : public benchmark::ConsoleReporter {
public:
    bool ReportContext(const Context& ctx) override {
        if (context_done_) return true;
        context_done_ = true;
        return ConsoleReporter::ReportContext(ctx);
    }
    void ReportRuns(const std::vector<Run>& runs) override {
        ConsoleReporter::ReportRuns(runs);
        for (const auto& r : runs) {
            if (r.error_occurred) continue;
            times[r.run_name.function_name].push_back(r.GetAdjustedRealTime());
            json["benchmarks"].push_back({{"name", r.benchmark_name()},
                                          {"iterations", r.iterations},
                                          {"real_time", r.GetAdjustedRealTime()},
                                          {"cpu_time", r.GetAdjustedCPUTime()},
                                          {"time_unit", benchmark::GetTimeUnitString(r.time_unit)}});
        }
    }
    std::map<std::string, std::vector<double>> times;  // by function name, in each benchmark's time unit
    // Every run and the summary, for --benchmark_out: Google Benchmark's own
    // file output would keep only the last of the interleaved passes.
    nlohmann::json json = {{"benchmarks", nlohmann::json::array()}, {"summary", nlohmann::json::object()}};

private:
    bool context_done_ = false;
};

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// median_i(a_i - b_i): the paired difference of two interleaved series.
double median_diff(const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<double> d;
    for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) d.push_back(a[i] - b[i]);
    return median(d);
}

// Runs the benchmarks in the guest: boot, exec ourselves as root, print.
int run_in_guest(const std::string& kernel, const std::vector<std::string>& args) {
    memhp::lab::GuestConfig cfg;
    cfg.kernel = kernel;
    std::fprintf(stderr, "memhp_probe_bench: booting a %s lab guest (TCG)...\n", kernel.c_str());
    auto guest = memhp::lab::Guest::boot(cfg, [](const std::string& s) { std::fprintf(stderr, "  %s\n", s.c_str()); });
    // The guest writes into a RAM overlay: --benchmark_out goes to a guest
    // file that is copied back to the host path afterwards.
    std::vector<std::string> argv = {(self_dir() / "memhp_probe_bench").string()};
    std::optional<std::string> host_out;
    const std::string guest_out = "/tmp/memhp_probe_bench.json";
    for (const auto& a : args) {
        if (a.starts_with("--benchmark_out=")) {
            host_out = a.substr(std::string("--benchmark_out=").size());
            argv.push_back("--benchmark_out=" + guest_out);
        } else {
            argv.push_back(a);
        }
    }
    std::fprintf(stderr, "memhp_probe_bench: guest %s up in %.1f s; running %s (several minutes under TCG)\n",
                 guest->release().c_str(), guest->boot_seconds(), memhp::shell_join(argv).c_str());
    // Spawned, its output streamed as it comes: the run takes minutes.
    auto& agent = guest->agent();
    const std::string out = "/tmp/memhp_probe_bench.out";
    const int pid = agent.spawn(argv, out);
    std::size_t shown = 0;
    std::optional<int> code;
    const auto deadline = Clock::now() + std::chrono::minutes(90);
    while (!code && Clock::now() < deadline) {
        code = agent.wait(pid, std::chrono::seconds(2));
        const std::string text = agent.try_read(out).value_or("");
        if (text.size() > shown) {
            std::fputs(text.c_str() + shown, stdout);
            std::fflush(stdout);
            shown = text.size();
        }
    }
    if (!code) {
        agent.signal(pid, SIGKILL);
        std::fprintf(stderr, "memhp_probe_bench: no result from the guest within 90 minutes\n");
    } else if (host_out) {
        if (auto j = agent.try_read(guest_out))
            memhp::write_file_atomic(*host_out, *j);
        else
            std::fprintf(stderr, "memhp_probe_bench: the guest wrote no %s\n", guest_out.c_str());
    }
    guest->shutdown();
    return code && *code == 0 ? 0 : 1;
}

void usage() {
    std::fputs(
        "usage: memhp_probe_bench [--boot[=KERNEL]] [--reps=N] [--bpftrace-reps=N] [--deadline=S] [--no-faults]\n"
        "                         [--no-startup] [benchmark flags]\n"
        "  --boot[=KERNEL]  boot a lab guest (default kernel 6.1) and run there; without it, run here\n"
        "                   (needs root and a kernel with BTF)\n"
        "  --reps=N         interleaved repetitions of every mode (default 9)\n"
        "  --bpftrace-reps=N  start-ups of bpftrace (default: as --reps)\n"
        "  --deadline=S     give up waiting for a start-up after S seconds (default 900); the figure\n"
        "                   is then S, a lower bound\n"
        "  --no-faults      skip the page-fault (always-on cost) benchmarks\n"
        "  --no-startup     skip the start-up comparison with bpftrace\n"
        "  --benchmark_out=FILE  every run and the summary figures as JSON (with --boot: copied back)\n"
        "  other --benchmark_* flags go to Google Benchmark (e.g. --benchmark_min_time=2)\n",
        stderr);
}

// What the command line asks for.
struct BenchArgs {
    std::vector<std::string> passthrough;  // to the guest run
    std::optional<std::string> boot;
    int reps = 9;
    int bpftrace_reps = 0;  // 0: as --reps
    std::optional<std::string> json_out;
    bool faults = true, starts = true;
    std::vector<char*> bench_argv;  // to Google Benchmark
};

// One of our own options (not --boot, not --benchmark_*); false with a
// message when its value is bad.
bool parse_own_option(const std::string& a, BenchArgs& args) {
    if (a.starts_with("--reps=")) {
        args.reps = std::atoi(a.c_str() + 7);
        if (args.reps < 1) {
            std::fprintf(stderr, "memhp_probe_bench: --reps needs a positive number\n");
            return false;
        }
    } else if (a.starts_with("--bpftrace-reps=") || a.starts_with("--deadline=")) {
        const int v = std::atoi(a.c_str() + a.find('=') + 1);
        if (v < 1) {
            std::fprintf(stderr, "memhp_probe_bench: %s needs a positive number\n", a.c_str());
            return false;
        }
        if (a.starts_with("--deadline="))
            g_deadline = std::chrono::seconds(v);
        else
            args.bpftrace_reps = v;
    } else if (a == "--no-faults") {
        args.faults = false;
    } else if (a == "--no-startup") {
        args.starts = false;
    } else {
        std::fprintf(stderr, "memhp_probe_bench: unknown option %s\n", a.c_str());
        usage();
        return false;
    }
    return true;
}

// The exit code when the program should stop here (--help: 0, bad
// options: 2), else nullopt.
std::optional<int> parse_args(int argc, char** argv, BenchArgs& args) {
    args.bench_argv = {argv[0]};
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            usage();
            return 0;
        }
        if (a == "--boot" || a.starts_with("--boot=")) {
            args.boot = a == "--boot" ? "6.1" : a.substr(7);
            continue;
        }
        args.passthrough.push_back(a);
        if (a.starts_with("--benchmark_out=")) {
            args.json_out = a.substr(std::string("--benchmark_out=").size());
        } else if (a.starts_with("--benchmark_out_format=")) {
            // JSON only (written by this program)
        } else if (a.starts_with("--benchmark_")) {
            args.bench_argv.push_back(argv[i]);
        } else if (!parse_own_option(a, args)) {
            return 2;
        }
    }
    if (args.bpftrace_reps == 0) args.bpftrace_reps = args.reps;
    return std::nullopt;
}

const std::vector<std::string> kFaultModes = {"none", "empty", "memhp"};

void register_benchmarks(const BenchArgs& args) {
    if (args.faults) {
        for (const auto& m : kFaultModes)
            benchmark::RegisterBenchmark(("PageFault/" + m).c_str(), page_faults)->Unit(benchmark::kMicrosecond);
    }
    if (args.starts) {
        auto bpftrace = memhp::find_program("bpftrace");
        if (!bpftrace) throw memhp::Error("bpftrace not found: run scripts/install-deps.sh (Debian package bpftrace)");
        g_tools["memhp"] = {{(self_dir() / "memhp").string(), "trace"}, "memhp: attached", args.reps};
        g_tools["bpftrace"] = {
            {bpftrace->string(), MEMHP_SOURCE_DIR "/bench/micro/hotplug.bt"}, "Attaching", args.bpftrace_reps, true};
        for (const auto& [name, tool] : g_tools)
            benchmark::RegisterBenchmark(("Startup/" + name).c_str(),
                                         [n = name](benchmark::State& s) { startup(s, n); })
                ->UseManualTime()
                ->Iterations(1)
                ->Unit(benchmark::kMillisecond);
    }
}

// Every mode once per repetition, interleaved, so drift hits them alike.
void run_interleaved(const BenchArgs& args, Collecting& reporter) {
    for (int rep = 0; rep < args.reps; ++rep) {
        if (args.faults)
            for (const auto& m : kFaultModes) {
                Attached on(m);
                benchmark::RunSpecifiedBenchmarks(&reporter, "^PageFault/" + m + "(/|$)");
            }
        if (args.starts)
            for (const auto& [name, tool] : g_tools)
                if (rep < tool.reps) benchmark::RunSpecifiedBenchmarks(&reporter, "^Startup/" + name + "(/|$)");
    }
}

void report_faults(Collecting& reporter) {
    auto& t = reporter.times;
    const double per_page = 1000.0 / kPagesPerIteration;  // us per iteration -> ns per page
    const double none = median(t["PageFault/none"]) * per_page;
    const double empty = median_diff(t["PageFault/empty"], t["PageFault/none"]) * per_page;
    const double memhp = median_diff(t["PageFault/memhp"], t["PageFault/none"]) * per_page;
    reporter.json["summary"]["page_fault_ns_per_page"] = {
        {"none", none}, {"empty_added", empty}, {"memhp_added", memhp}};
    std::printf(
        "page fault + free, per page: %.0f ns without programs; added by the empty programs %+.0f ns, "
        "by memhp %+.0f ns\n",
        none, empty, memhp);
    if (empty > 0)
        std::printf("memhp's added cost / the empty programs': %.2fx (target <= 1.25x)\n", memhp / empty);
    else
        std::printf(
            "memhp's added cost / the empty programs': n/a (the empty programs' cost is below the "
            "noise of this run)\n");
    // The programs themselves, same loop, kernel statistics on.
    double e = -1, m = -1;
    {
        Attached on("empty");
        e = program_ns_per_run("empty_page_allo", 2000);
    }
    {
        Attached on("memhp");
        m = program_ns_per_run("page_alloc_tp_b", 2000);
    }
    reporter.json["summary"]["program_ns_per_call"] = {{"empty", e}, {"memhp", m}};
    std::printf(
        "mm_page_alloc program run time per call (BPF_ENABLE_STATS, 2000 loops): empty %.0f ns, "
        "memhp %.0f ns: %.2fx\n",
        e, m, e > 0 ? m / e : 0.0);
}

void report_startup(Collecting& reporter) {
    const double m = median(reporter.times["Startup/memhp"]);
    const double b = median(reporter.times["Startup/bpftrace"]);
    const char* bound = g_tools["bpftrace"].hit_deadline ? ">= " : "";
    reporter.json["summary"]["startup_ms"] = {
        {"memhp", m}, {"bpftrace", b}, {"bpftrace_lower_bound", g_tools["bpftrace"].hit_deadline}};
    std::printf(
        "start-up to all probes attached (%d and %d runs): memhp %.0f ms, bpftrace %s%.0f ms: memhp %s%.1fx "
        "faster (target >= 5x)\n",
        g_tools["memhp"].reps, g_tools["bpftrace"].reps, m, bound, b, bound, m > 0 ? b / m : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
    BenchArgs args;
    if (auto code = parse_args(argc, argv, args)) return *code;
    try {
        if (args.boot) return run_in_guest(*args.boot, args.passthrough);

        memhp::collector::install_libbpf_logging();
        memhp::collector::check_bpf_prerequisites();
        int bargc = static_cast<int>(args.bench_argv.size());
        benchmark::Initialize(&bargc, args.bench_argv.data());
        Collecting reporter;
        register_benchmarks(args);
        run_interleaved(args, reporter);
        benchmark::Shutdown();

        std::printf("\nmedians of %d interleaved runs each\n", args.reps);
        if (args.faults) report_faults(reporter);
        if (args.starts) report_startup(reporter);
        if (args.json_out) memhp::write_file_atomic(*args.json_out, reporter.json.dump(2) + "\n");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "memhp_probe_bench: error: %s\n", e.what());
        return 1;
    }
}
